"""A task module only the tests use, given to the worker by the scenario (celery_config(include=[...]))."""

from direct_app import app


@app.task(name="direct.shout", shared=False)
def shout(text: str) -> str:
    return text.upper()
