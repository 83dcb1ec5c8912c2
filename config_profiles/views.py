"""Profile pages: the list, the edit form (model matrix and consensus settings) with inline
validation, and create-from-a-copy. Every write goes through config_profiles.services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config_profiles.forms import ProfileCopyForm, ProfileForm
from config_profiles.models import Profile
from config_profiles.selectors import profiles_all
from config_profiles.services import profile_copy, profile_update
from swarm.stages import ROLES
from tekton_site.errors import FieldError


@require_GET
@login_required
def profile_list_view(request: HttpRequest) -> HttpResponse:
    """`/config/`: every profile with its consensus settings, and a copy form per row."""
    return render(
        request,
        "config_profiles/list.html",
        {"profiles": profiles_all(), "copy_form": ProfileCopyForm()},
    )


@require_http_methods(["GET", "POST"])
@login_required
def profile_edit_view(request: HttpRequest, name: str) -> HttpResponse:
    """`/config/<name>/`: GET the form; POST saves through profile_update, or shows the
    refused value's message beside its field and saves nothing."""
    profile = get_object_or_404(Profile, name=name)
    validate_url = reverse("profile-page-validate", args=[profile.name])
    if request.method == "POST":
        form = ProfileForm(request.POST, validate_url=validate_url)
        if form.is_valid():
            try:
                profile_update(profile=profile, data=form.service_data())
            except FieldError as exc:
                form.add_profile_error(exc)
            else:
                messages.success(request, f"Profile {profile.name} saved.")
                return redirect(reverse("profile-page", args=[profile.name]))
    else:
        form = ProfileForm(initial=ProfileForm.initial_for(profile), validate_url=validate_url)
    return render(
        request,
        "config_profiles/edit.html",
        {"profile": profile, "form": form, "roles": ROLES},
    )


@require_POST
@login_required
def profile_validate_view(request: HttpRequest, name: str) -> HttpResponse:
    """htmx inline validation: the whole form is checked with profile_validate (nothing is
    saved) and the error of the field that triggered the request comes back as the
    content of its error slot (empty when the value is fine)."""
    get_object_or_404(Profile, name=name)
    form = ProfileForm(request.POST)
    form.is_valid()
    field = (request.htmx.trigger_name if request.htmx else None) or request.POST.get("field", "")
    errors = form.errors.get(field, []) if field in form.fields else []
    return render(request, "config_profiles/edit.html#field-error", {"errors": errors})


@require_POST
@login_required
def profile_copy_view(request: HttpRequest, name: str) -> HttpResponse:
    """Create a new profile with every setting of `name`, then open it for editing."""
    source = get_object_or_404(Profile, name=name)
    form = ProfileCopyForm(request.POST)
    if form.is_valid():
        try:
            copy = profile_copy(profile=source, name=form.cleaned_data["name"])
        except FieldError as exc:
            messages.error(request, f"Copy of {source.name} refused: {exc.message}")
        else:
            messages.success(request, f"Profile {copy.name} created from {source.name}.")
            return redirect(reverse("profile-page", args=[copy.name]))
    else:
        messages.error(
            request,
            "Copy refused: " + "; ".join(e for errs in form.errors.values() for e in errs),
        )
    return redirect(reverse("profiles-page"))
