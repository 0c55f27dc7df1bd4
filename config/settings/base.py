"""Settings shared by every environment; differences come from the environment."""

from pathlib import Path

from config.env import env_bool, env_int, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("NURTURE_VAR_DIR", str(BASE_DIR / "var")))
# SQLite, sent mail and exports live here; it must exist before first use.
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    host
    for host in env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host
]
NURTURE_SITE_URL = env_str("NURTURE_SITE_URL", "http://127.0.0.1:8000")
# Shared secrets the email providers' tracking webhooks prove themselves with;
# empty refuses every post from that provider.
NURTURE_MAILGUN_SIGNING_KEY = env_str("NURTURE_MAILGUN_SIGNING_KEY")
NURTURE_POSTMARK_WEBHOOK_TOKEN = env_str("NURTURE_POSTMARK_WEBHOOK_TOKEN")
NURTURE_SENDGRID_WEBHOOK_TOKEN = env_str("NURTURE_SENDGRID_WEBHOOK_TOKEN")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_q",
    "crm",
    "nurture",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'nurture.sqlite3'}"),
        base_dir=BASE_DIR,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

EMAIL_BACKEND = env_str(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = env_str("DJANGO_EMAIL_FILE_PATH", str(VAR_DIR / "sent-emails"))
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "nurture@example.com")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "config.api_permissions.ModelPermissions",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "config.api_parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}

# django-q2: the ORM broker needs no server; set NURTURE_BROKER_URL to a
# redis:// URL to use Redis instead.
Q_CLUSTER = {
    "name": "nurture",
    "workers": env_int("NURTURE_Q_WORKERS", 2),
    "timeout": env_int("NURTURE_Q_TIMEOUT", 300),
    "retry": env_int("NURTURE_Q_RETRY", 360),
    "max_attempts": 3,
    "queue_limit": 50,
    "bulk": 10,
    "catch_up": False,
    "label": "Background tasks",
}
_broker_url = env_str("NURTURE_BROKER_URL")
if _broker_url.startswith(("redis://", "rediss://", "unix://")):
    Q_CLUSTER["redis"] = _broker_url
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.5

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "crm": {
            "handlers": ["console"],
            "level": env_str("NURTURE_LOG_LEVEL", "WARNING"),
        },
        "nurture": {
            "handlers": ["console"],
            "level": env_str("NURTURE_LOG_LEVEL", "WARNING"),
        },
    },
}
