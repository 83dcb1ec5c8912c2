"""The dashboard's pages (server-rendered, htmx for live parts). Mounted at "/" by
tekton_site.urls; the API lives under /api/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from config_profiles import views as profile_views
from notifications import views as hook_views
from prompts import views as prompt_views
from runs import views as run_views
from syschecks import views as check_views

urlpatterns = [
    path("", run_views.runs_list_view, name="runs-page"),
    path("runs/new/", run_views.run_launch_view, name="run-launch"),
    path("runs/<int:run_id>/", run_views.run_detail_view, name="run-page"),
    path("runs/<int:run_id>/cancel/", run_views.run_cancel_view, name="run-page-cancel"),
    path("runs/<int:run_id>/resume/", run_views.run_resume_view, name="run-page-resume"),
    path("runs/<int:run_id>/fork/", run_views.run_fork_view, name="run-page-fork"),
    path("runs/<int:run_id>/budget/", run_views.run_budget_view, name="run-page-budget"),
    path(
        "runs/<int:run_id>/stages/<str:stage>/approve/",
        run_views.stage_approve_view,
        name="stage-page-approve",
    ),
    path(
        "runs/<int:run_id>/stages/<str:stage>/retry/",
        run_views.stage_retry_view,
        name="stage-page-retry",
    ),
    path(
        "runs/<int:run_id>/stages/<str:stage>/abort/",
        run_views.stage_abort_view,
        name="stage-page-abort",
    ),
    path("prompts/", prompt_views.prompts_view, name="prompts-page"),
    path("prompts/ask/", prompt_views.prompt_ask_view, name="prompt-page-ask"),
    path("prompts/<int:invocation_id>/", prompt_views.prompt_detail_view, name="prompt-page"),
    path("repo/", run_views.repo_health_view, name="repo-page"),
    path("config/", profile_views.profile_list_view, name="profiles-page"),
    path("config/<str:name>/", profile_views.profile_edit_view, name="profile-page"),
    path(
        "config/<str:name>/validate/",
        profile_views.profile_validate_view,
        name="profile-page-validate",
    ),
    path("config/<str:name>/copy/", profile_views.profile_copy_view, name="profile-page-copy"),
    path("system/checks/", check_views.checks_view, name="checks-page"),
    path("hooks/", hook_views.hooks_view, name="hooks-page"),
    path("hooks/new/", hook_views.hook_create_view, name="hook-page-create"),
    path("hooks/<int:hook_id>/pause/", hook_views.hook_pause_view, name="hook-page-pause"),
    path("hooks/<int:hook_id>/resume/", hook_views.hook_resume_view, name="hook-page-resume"),
    path("hooks/<int:hook_id>/delete/", hook_views.hook_delete_view, name="hook-page-delete"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
