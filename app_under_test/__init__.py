"""The application under test: a Flask page that offloads slow work to a Celery worker.

It is shaped like the app a team would have (and like the classic demo this project grew from):
``web`` is the Flask app served by gunicorn with one synchronous worker, ``tasks`` is the worker's
code with ``say_hello`` bound (``bind=True``) and routed to ``hello_queue`` by configuration. Both
read their settings from the environment, which supervisord sets per program.
"""
