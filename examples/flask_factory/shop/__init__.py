"""A Flask app in the application-factory style, with Celery set up as Flask's docs show.

The broker URL lives under the app's own config key (``MESSAGE_BROKER``), tasks go to Celery's
default queue, the signup form POSTs and redirects (302), and there is no health route: nothing here
was written for the harness.
"""

from __future__ import annotations

import importlib
import os

from celery import Celery, Task
from flask import Flask, redirect, render_template_string, request, url_for

PAGE = """<form method="post" action="/signup"><input name="email"><button>Sign up</button></form>"""


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(broker_url=app.config["MESSAGE_BROKER"], task_ignore_result=True)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(tasks_module: str = "shop.tasks") -> Flask:
    app = Flask(__name__)
    app.config["MESSAGE_BROKER"] = os.environ.get("SHOP_BROKER", "amqp://guest:guest@localhost:5672//")
    celery_init_app(app)
    tasks = importlib.import_module(tasks_module)

    @app.get("/")
    def index():
        return render_template_string(PAGE)

    @app.post("/signup")
    def signup():
        tasks.send_welcome_email.delay(request.form["email"])
        return redirect(url_for("index"))

    return app
