"""WebSocket routes of the runs app (mounted by tekton_site.asgi)."""

from django.urls import path

from runs.consumers import RunEventsConsumer
from runs.consumers_ui import RunUiConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunEventsConsumer.as_asgi()),
    path("ws/runs/<int:run_id>/ui/", RunUiConsumer.as_asgi()),
]
