"""The RabbitMQ broker family: where a run's RabbitMQ comes from, a scenario's own vhost on it, and its faults.

``base`` (what every RabbitMQ provider offers: the endpoint, the management API, the node's settings and alarms),
one module per provider (``local``: a private node; ``docker``: a container; ``url``: a broker the harness does
not own; ``warm``: a node kept up between runs), ``vhost`` (a scenario's own virtual host), ``management`` (the
management HTTP API client) and ``alarms`` (resource alarms). Only modules of this folder import ``amqp`` or the
management client.
"""
