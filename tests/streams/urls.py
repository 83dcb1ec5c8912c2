"""The events endpoint alone, so these tests do not depend on the rest of the API's routes."""

from django.urls import path

from runs.streams import RunEventsApi

urlpatterns = [path("api/runs/<int:run_id>/events", RunEventsApi.as_view())]
