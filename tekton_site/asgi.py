"""ASGI entry point: HTTP through Django (the API's SSE stream included), WebSockets
through Channels (session or API-token authentication, Origin checked against
ALLOWED_HOSTS)."""

import os

import django
from django.conf import settings
from django.core.asgi import get_asgi_application

from tekton_site.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
django.setup(set_prefix=False)
# Tracing (when OTEL_* asks for it) before Django builds its handler: it adds middleware.
tracing_setup(service_name="tekton-web", instrument_django=True)
# Set up Django before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from runs.routing import websocket_urlpatterns  # noqa: E402
from tekton_site.metrics import exporter_start  # noqa: E402

# With TEKTON_METRICS_PORT, this process's metrics also on a bound port (no token there).
exporter_start(with_database=True)

# Embedded mode: this process executes stages (in threads), so it also sweeps for stages
# whose process died, under the same lease rule as Celery workers.
if settings.TEKTON_EXECUTION == "inline":
    from tekton_site.sweeper import sweeper_start  # noqa: E402

    sweeper_start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
