"""An example app in a git repository of its own: two commits, the second changing each kind of thing the
deploy check looks for, one task per kind (``CHANGES`` says which).

``shop`` is a small Celery app package, as a team would have: ``shop/celery.py`` makes the app and
includes ``shop/tasks.py``. Its task bodies only format their arguments, so any value runs them, except
``resize``, which multiplies its width (the proof gives it numbers with ``--example``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CELERY = """
from celery import Celery

app = Celery("shop", include=["shop.tasks"])
"""

V1 = """
from shop.celery import app


@app.task
def add(x, y):
    return f"{x}+{y}"


@app.task
def send_email(to, subject):
    return f"mail to {to}: {subject}"


@app.task
def resize(path, width):
    return f"{path} at {width * 2}"


@app.task
def charge(order_id, amount, currency):
    return f"{order_id}: {amount} {currency}"


@app.task
def move(src, dst):
    return f"{src} -> {dst}"


@app.task
def notify(user, message):
    return f"{user}: {message}"


@app.task
def log_event(event, **fields):
    return f"{event} {fields}"


@app.task
def cleanup(days):
    return f"older than {days}"


@app.task(queue="reports")
def monthly_report(month):
    return f"report {month}"


@app.task
def ship_order(order_id):
    return f"shipping {order_id}"


@app.task
def legacy_sync():
    return "synced"


@app.task(acks_late=False, max_retries=3)
def import_feed(url):
    return f"feed {url}"
"""

V2 = """
from shop.celery import app


@app.task
def add(x, y):
    return f"{x}+{y}"


@app.task
def send_email(to, subject, body):
    return f"mail to {to}: {subject} {body}"


@app.task
def resize(path, width, height=0):
    return f"{path} at {width * 2}x{height}"


@app.task
def charge(order_id, amount):
    return f"{order_id}: {amount}"


@app.task
def move(dst, src):
    return f"{src} -> {dst}"


@app.task
def notify(user, message, **extra):
    return f"{user}: {message}"


@app.task
def log_event(event):
    return f"{event}"


@app.task(bind=True)
def cleanup(self, days):
    return f"older than {days}"


@app.task(queue="analytics")
def monthly_report(month):
    return f"report {month}"


@app.task
def dispatch_order(order_id):
    return f"shipping {order_id}"


@app.task
def audit(entry):
    return f"audit {entry}"


@app.task(acks_late=True, max_retries=5, time_limit=60)
def import_feed(url):
    return f"feed {url}"
"""

# task -> the kinds of change the second commit makes to it.
CHANGES = {
    "shop.tasks.send_email": {"signature"},
    "shop.tasks.resize": {"signature"},
    "shop.tasks.charge": {"signature"},
    "shop.tasks.move": {"signature"},
    "shop.tasks.notify": {"signature"},
    "shop.tasks.log_event": {"signature"},
    "shop.tasks.cleanup": {"bind"},
    "shop.tasks.monthly_report": {"routing"},
    "shop.tasks.ship_order": {"renamed"},
    "shop.tasks.legacy_sync": {"removed"},
    "shop.tasks.audit": {"added"},
    "shop.tasks.import_feed": {"delivery"},
}
APP = "shop.celery:app"
EXAMPLES = ('shop.tasks.resize={"path": "cat.png", "width": 100, "height": 50}',)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def commit(repo: Path, tasks: str, message: str) -> None:
    (repo / "shop").mkdir(exist_ok=True)
    (repo / "shop" / "__init__.py").write_text("")
    (repo / "shop" / "celery.py").write_text(CELERY)
    (repo / "shop" / "tasks.py").write_text(tasks)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def make_repo(repo: Path) -> Path:
    """A git repository whose HEAD~1 is the example app's v1 and HEAD its v2."""
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, V1, "v1")
    commit(repo, V2, "v2: every kind of change")
    return repo
