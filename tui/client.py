"""The REST API as the terminal UI uses it: one httpx.AsyncClient, one method per call, and
every failure as an ApiError whose message is one readable line.

Plain Python (httpx), no Django: the same client talks to a remote server or to the one
tui.local started for this process.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

logger = logging.getLogger("tekton.tui.client")

# Long enough for a run creation that checks the broker and a worker, short enough that a
# dead server is reported while the person still remembers what they asked for.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ApiError(Exception):
    """A call that did not succeed. `status` is the HTTP status (0: no answer at all);
    `errors` the field errors of a 400; str() is one line meant for a person."""

    def __init__(
        self, message: str, *, status: int = 0, errors: dict[str, list[str]] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_from_response(response: httpx.Response) -> ApiError:
    """The API's error shapes (tekton_site.api_errors) as one line."""
    code = response.status_code
    body = _body(response)
    detail = _one_line(body.get("detail") or response.reason_phrase or "error")
    errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
    if code == 400 and errors:
        parts = [
            f"{field}: {' '.join(str(m) for m in messages) if isinstance(messages, list) else messages}"
            for field, messages in errors.items()
        ]
        return ApiError(_one_line("400 " + "; ".join(parts)), status=code, errors=errors)
    if code == 401:
        message = f"401 not authenticated: {detail} (check --token or TEKTON_TOKEN)"
    elif code == 403:
        message = f"403 not allowed: {detail}"
    elif code == 429:
        wait = body.get("retry_after") or response.headers.get("Retry-After")
        message = f"429 limit reached: {detail}" + (f"; try again in {wait} s" if wait else "")
    elif code == 503:
        service = body.get("service")
        message = f"503 unavailable: {detail}" + (f" ({service})" if service else "")
    else:
        message = f"{code} {detail}"
    return ApiError(_one_line(message), status=code, errors=errors)


def error_from_exception(exc: Exception, base_url: str) -> ApiError:
    """A transport failure (refused, timed out, reset) as one line."""
    if isinstance(exc, httpx.ConnectError):
        causes, cause = [], exc
        while cause is not None and len(causes) < 5:
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__
        refused = any(
            isinstance(c, ConnectionRefusedError) or "refused" in str(c).lower() for c in causes
        )
        what = "connection refused" if refused else "cannot connect"
    elif isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = "the connection was closed"
    else:
        what = _one_line(str(exc) or type(exc).__name__, 120)
    return ApiError(f"cannot reach {base_url}: {what}")


class ApiClient:
    """Bearer-token client of one Tekton server. Every method raises ApiError only."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "tekton-tui"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.base_url) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"{method} {path}: the server answered {response.status_code} without JSON",
                status=response.status_code,
            ) from None

    # --- reads ------------------------------------------------------------------------------
    async def runs(
        self,
        *,
        status: str | None = None,
        q: str | None = None,
        repo: str | None = None,
        cursor_url: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first (`next` / `previous` are full URLs)."""
        if cursor_url:
            return await self.json("GET", cursor_url)
        params = {k: v for k, v in {"status": status, "q": q, "repo": repo}.items() if v}
        return await self.json("GET", "/api/runs/", params=params)

    async def run(self, run_id: int) -> dict[str, Any]:
        return await self.json("GET", f"/api/runs/{run_id}/")

    async def transcript(self, run_id: int, stage: str | None = None) -> dict[str, Any]:
        params = {"stage": stage} if stage else {}
        return await self.json("GET", f"/api/runs/{run_id}/transcript/", params=params)

    async def artifacts(self, run_id: int) -> list[dict[str, Any]]:
        return await self.json("GET", f"/api/runs/{run_id}/artifacts/")

    async def artifact_text(self, run_id: int, name: str) -> str:
        response = await self.request("GET", f"/api/runs/{run_id}/artifacts/{name}")
        return response.content.decode("utf-8", errors="replace")

    async def profiles(self) -> list[dict[str, Any]]:
        return await self.json("GET", "/api/config/profiles/")

    async def attempts(self, run_id: int, stage: str) -> dict[str, Any]:
        """A stage's set-aside attempts and the keys it can be compared with."""
        return await self.json("GET", f"/api/runs/{run_id}/stages/{stage}/attempts/")

    async def compare(self, run_id: int, stage: str, key: str) -> dict[str, Any]:
        """The stage's artifact against `key` (attempt-N, run-N) as a unified diff."""
        return await self.json(
            "GET", f"/api/runs/{run_id}/stages/{stage}/compare/", params={"with": key}
        )

    # --- writes -----------------------------------------------------------------------------
    async def explain(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.json("POST", "/api/runs/", json={**body, "explain": True})

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.json("POST", "/api/runs/", json={**body, "explain": False})

    async def cancel(self, run_id: int) -> dict[str, Any]:
        return await self.json("POST", f"/api/runs/{run_id}/cancel/")

    async def resume(self, run_id: int) -> dict[str, Any]:
        return await self.json("POST", f"/api/runs/{run_id}/resume/")

    async def fork(
        self, run_id: int, stage: str, *, profile: str | None = None, model: str | None = None
    ) -> dict[str, Any]:
        body = {"from": stage, "profile": profile or None, "model": model or None}
        return await self.json("POST", f"/api/runs/{run_id}/fork/", json=body)

    async def approve(self, run_id: int, stage: str) -> dict[str, Any]:
        return await self.json("POST", f"/api/runs/{run_id}/stages/{stage}/approve/")

    async def retry(self, run_id: int, stage: str, note: str) -> dict[str, Any]:
        return await self.json(
            "POST", f"/api/runs/{run_id}/stages/{stage}/retry/", json={"note": note}
        )

    async def abort(self, run_id: int, stage: str) -> dict[str, Any]:
        return await self.json("POST", f"/api/runs/{run_id}/stages/{stage}/abort/")
