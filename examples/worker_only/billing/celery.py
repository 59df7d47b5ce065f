"""A worker-only service: no web app; other services send it tasks. Two queues, routed by task name."""

from celery import Celery
from kombu import Queue

app = Celery("billing", include=["billing.tasks"])
app.conf.update(
    broker_url="amqp://guest:guest@rabbitmq:5672//",
    task_queues=[Queue("invoices"), Queue("default")],
    task_default_queue="default",
    task_routes={"billing.charge": {"queue": "invoices"}},
    task_ignore_result=True,
)
