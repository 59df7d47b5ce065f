"""The Redis broker family: where a run's Redis comes from, a scenario's own database on it, and its faults.

``base`` (what every Redis provider offers: the endpoint, the version, the faults of a server the harness
owns), one module per provider (``local``: a private ``redis-server``; ``docker``: a container; ``url``: a
server the harness does not own), and ``space`` (a scenario's own database: its queues, their depth, the
messages a worker holds unacknowledged). Only modules of this folder import ``redis``.
"""
