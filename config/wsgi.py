import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from analytics.api.events_wsgi import events_wsgi  # noqa: E402 - after Django is set up
from analytics.infra.statements import web_statement_timeout_install  # noqa: E402

# Registries' events are answered in front of Django's middlewares and DRF, by the same rules as the
# DRF view (analytics/api/events_wsgi.py); every other request is Django's.
application = events_wsgi(django_application)
# Web requests only: workers and commands never load this module, and their ingests run long.
web_statement_timeout_install(settings.WEB_STATEMENT_TIMEOUT_SECONDS)
