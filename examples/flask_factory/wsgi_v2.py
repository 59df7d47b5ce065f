"""The next release, deployed to the workers first."""

from shop import create_app

celery_app = create_app(tasks_module="shop.tasks_v2").extensions["celery"]
