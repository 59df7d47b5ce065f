"""The resilience audit: the failure catalogue, run against any team's Celery app and configuration.

``pytest --pyargs harness.audit --celery-app proj.celery:app --audit-like proj.tasks.send_email`` (or
``python -m harness.audit proj.celery:app --audit-like proj.tasks.send_email``) starts the app's worker
with the app's own configuration, sends a probe task routed and configured like the real task
(``harness.probe``), and runs the catalogue's failures against it: a worker outage, a worker killed, a
pool process OOM-killed, warm, group and cold shutdowns, a broker restart under load with sends while it
is down, a task past the broker's consumer timeout, bad messages, and the app's periodic tasks (its
``beat_schedule``, time compressed) behind a stopped worker and sent by two beats. The answer is a table of
fates per failure, the settings that decided them, and what would change them (``harness.audit.results``),
also as JSON and in the run report; ``--audit-expect lost=0`` makes it a CI check.

Modules: ``plan`` (what runs), ``beat`` (the app's beat_schedule as the beat rows run it), ``producer`` (how
probes are sent), ``runner`` (the ``audit`` fixture's helper), ``failures`` (what decides each failure, what
would change it), ``expect`` (what a team accepts), ``results`` (the table, JSON and report section),
``conftest`` (fixtures), ``test_*`` (the scenarios), ``__main__`` (the command).
"""
