"""Settings of the demo app: the database is the pooler, not PostgreSQL.

Every DB_* value comes from the environment, so the same settings work in
docker-compose.yml (DB_HOST=pgbouncer) and in the repository's tests.
"""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = ["demo"]
MIDDLEWARE = []
ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# CONN_MAX_AGE = 0, as the teams whose write-ups we followed settled on: Django opens a
# connection to the pooler per request, which costs the pooler almost nothing, and no
# worker keeps a connection it does not use. A positive value works too in transaction
# mode (the pooler lends a server only per transaction); then turn on
# CONN_HEALTH_CHECKS so that a connection the pooler closed is replaced, not reused.
CONN_MAX_AGE = int(os.environ.get("DB_CONN_MAX_AGE", "0"))

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "pgbouncer"),
        "PORT": os.environ.get("DB_PORT", "6432"),
        "NAME": os.environ.get("DB_NAME", "app"),
        "USER": os.environ.get("DB_USER", "app"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "CONN_MAX_AGE": CONN_MAX_AGE,
        "CONN_HEALTH_CHECKS": CONN_MAX_AGE > 0,
        # Server-side cursors are named cursors WITH HOLD outside a transaction; in
        # transaction mode the next query may run on another server, where the cursor
        # does not exist. Django then fetches results client-side.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"connect_timeout": 10},
    }
}
