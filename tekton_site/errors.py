"""The errors services raise for a person to read, shared by every app.

Each carries one safe line (`message`, never a URL with a password or a traceback) and,
where it applies, what is at fault: `FieldError.field` names the input (forms show the
message beside it, the API maps it to its request field), `ServiceUnavailable.service`
names the service that does not answer. The API turns them into its JSON errors
(tekton_site/api_errors.py), the CLI into one line and an exit code.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base: a service refused a request for a reason a person can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class FieldError(ServiceError, ValueError):
    """A person's input is wrong; `field` names it ("goal", "quorum",
    "stage_models.plan.proponent", ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class StateError(ServiceError):
    """The action is not allowed in the current state of what it acts on."""


class ServiceUnavailable(ServiceError):
    """A service Tekton depends on does not answer; `service` names it ("redis")."""

    def __init__(self, service: str, message: str):
        super().__init__(message)
        self.service = service
