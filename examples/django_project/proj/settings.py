import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_celery_beat", "orders"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "proj.urls"
WSGI_APPLICATION = "proj.wsgi.application"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("ORDERS_DB", BASE_DIR / "db.sqlite3")}
}
USE_TZ = True

# Celery, namespaced: CELERY_BROKER_URL is broker_url.
CELERY_BROKER_URL = "amqp://guest:guest@rabbitmq:5672//"
CELERY_TASK_IGNORE_RESULT = True
# Periodic tasks live in the database (django-celery-beat), edited in the admin; beat reads them from there.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Development defaults as many projects ship them: tasks run inside the request (and the view reads the
# setting itself), results go to a Redis of the deployment. The harness overrides both in every program
# it starts, at the layer that wins (the Django settings included), and says so if it cannot.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_RESULT_BACKEND = "redis://redis.invalid:6379/0"
