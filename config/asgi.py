import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from analytics.infra.statements import web_statement_timeout_install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()
# Web requests only: workers and commands never load this module, and their ingests run long.
web_statement_timeout_install(settings.WEB_STATEMENT_TIMEOUT_SECONDS)
