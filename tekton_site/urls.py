from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config_profiles.api import ProfileDetailApi, ProfileListCreateApi
from notifications.api import (
    HookDeliveriesApi,
    HookDetailApi,
    HookListCreateApi,
    HookPauseApi,
    HookResumeApi,
)
from prompts.api import PromptDetailApi, PromptEventsApi, PromptListCreateApi
from runs.api import (
    RunArtifactDownloadApi,
    RunArtifactListApi,
    RunBudgetApi,
    RunBundleApi,
    RunCancelApi,
    RunDetailApi,
    RunForkApi,
    RunListCreateApi,
    RunPatchApi,
    RunResumeApi,
    RunTestsApi,
    RunTranscriptApi,
    SearchApi,
    StageAbortApi,
    StageApproveApi,
    StageAttemptsApi,
    StageCompareApi,
    StageRetryApi,
)
from syschecks.api import SystemChecksApi
from tekton_site.health import healthz, readyz
from tekton_site.metrics import metrics_view

try:
    # Built alongside this module (the event streams); the API works without it.
    from runs.streams import RunEventsApi
except ImportError:  # pragma: no cover - only while runs/streams.py is not there yet
    RunEventsApi = None


api_urlpatterns = [
    path("api/runs/", RunListCreateApi.as_view(), name="run-list"),
    path("api/runs/<int:run_id>/", RunDetailApi.as_view(), name="run-detail"),
    path("api/runs/<int:run_id>/cancel/", RunCancelApi.as_view(), name="run-cancel"),
    path("api/runs/<int:run_id>/resume/", RunResumeApi.as_view(), name="run-resume"),
    path("api/runs/<int:run_id>/budget/", RunBudgetApi.as_view(), name="run-budget"),
    path("api/runs/<int:run_id>/fork/", RunForkApi.as_view(), name="run-fork"),
    path(
        "api/runs/<int:run_id>/stages/<str:stage>/approve/",
        StageApproveApi.as_view(),
        name="run-stage-approve",
    ),
    path(
        "api/runs/<int:run_id>/stages/<str:stage>/retry/",
        StageRetryApi.as_view(),
        name="run-stage-retry",
    ),
    path(
        "api/runs/<int:run_id>/stages/<str:stage>/abort/",
        StageAbortApi.as_view(),
        name="run-stage-abort",
    ),
    path(
        "api/runs/<int:run_id>/stages/<str:stage>/attempts/",
        StageAttemptsApi.as_view(),
        name="run-stage-attempts",
    ),
    path(
        "api/runs/<int:run_id>/stages/<str:stage>/compare/",
        StageCompareApi.as_view(),
        name="run-stage-compare",
    ),
    path("api/runs/<int:run_id>/artifacts/", RunArtifactListApi.as_view(), name="run-artifacts"),
    # <path:> so that a name with slashes (a traversal attempt) reaches the view and gets
    # the API's JSON 404 instead of falling through the resolver.
    path(
        "api/runs/<int:run_id>/artifacts/<path:name>",
        RunArtifactDownloadApi.as_view(),
        name="run-artifact",
    ),
    path("api/runs/<int:run_id>/transcript/", RunTranscriptApi.as_view(), name="run-transcript"),
    path("api/runs/<int:run_id>/tests/", RunTestsApi.as_view(), name="run-tests"),
    path("api/runs/<int:run_id>/patch/", RunPatchApi.as_view(), name="run-patch"),
    path("api/runs/<int:run_id>/bundle/", RunBundleApi.as_view(), name="run-bundle"),
    path("api/prompts/", PromptListCreateApi.as_view(), name="prompt-list"),
    path("api/prompts/<int:invocation_id>/", PromptDetailApi.as_view(), name="prompt-detail"),
    path(
        "api/prompts/<int:invocation_id>/events",
        PromptEventsApi.as_view(),
        name="prompt-events",
    ),
    path("api/config/profiles/", ProfileListCreateApi.as_view(), name="profile-list"),
    path("api/config/profiles/<str:name>/", ProfileDetailApi.as_view(), name="profile-detail"),
    path("api/system/checks/", SystemChecksApi.as_view(), name="system-checks"),
    path("api/search/", SearchApi.as_view(), name="search"),
    path("api/hooks/", HookListCreateApi.as_view(), name="hook-list"),
    path("api/hooks/<int:hook_id>/", HookDetailApi.as_view(), name="hook-detail"),
    path("api/hooks/<int:hook_id>/pause/", HookPauseApi.as_view(), name="hook-pause"),
    path("api/hooks/<int:hook_id>/resume/", HookResumeApi.as_view(), name="hook-resume"),
    path(
        "api/hooks/<int:hook_id>/deliveries/", HookDeliveriesApi.as_view(), name="hook-deliveries"
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
if RunEventsApi is not None:
    api_urlpatterns.append(
        path("api/runs/<int:run_id>/events", RunEventsApi.as_view(), name="run-events")
    )

# Every app's admin.py registers its models here, not when Django sets up
# (tekton_site/admin_config.py): before admin.site.urls reads the registry.
admin.autodiscover()

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    *api_urlpatterns,
    path("", include("tekton_site.urls_pages")),
]

handler404 = "tekton_site.api_errors.not_found"
