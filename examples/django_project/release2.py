"""The next release's workers, deployed first: the project's settings, release 2 of the orders tasks.

(In production this is the same ``proj.celery`` on a newer checkout; here both releases share a tree,
so release 2's app lives outside the ``proj`` package, whose import loads release 1's tasks.)
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")

import orders.tasks_v2  # noqa: E402,F401  -- registers release 2's orders.fulfil on this app
