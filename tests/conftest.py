"""Shared fixtures: embedded-mode settings under tmp paths, a real git repository, users."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.pyvenv import venv_link


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    # Each pytest process gets its own SQLite test file, so engineers and CI jobs running
    # the suite at the same time on one checkout never share (or delete) a test database.
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test-tekton.sqlite3"
        )


@pytest.fixture(scope="session", autouse=True)
def collected_static():
    """Pages name their CSS and JavaScript by hashed names from collectstatic's manifest, as
    in production: collect once (cached per checkout; see harness.static_root)."""
    from django.conf import settings

    from tests.integration.harness import static_root

    root = static_root()
    settings.STATIC_ROOT = root
    os.environ["TEKTON_STATIC_ROOT"] = str(root)
    return root


@pytest.fixture(autouse=True)
def tekton_settings(settings, tmp_path, monkeypatch):
    """Embedded mode, synchronous inline execution, in-memory channel layer, tmp roots."""
    settings.TEKTON_EXECUTION = "inline"
    settings.TEKTON_INLINE_THREADS = False
    # Retrieval tests turn it on with their own Milvus Lite file (tests/runs/test_retrieval.py).
    settings.TEKTON_RETRIEVAL = False
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    artifacts = tmp_path / "artifacts"
    repos = tmp_path / "repos"
    artifacts.mkdir()
    repos.mkdir()
    settings.TEKTON_ARTIFACT_ROOT = artifacts.resolve()
    settings.TEKTON_REPO_ROOTS = [repos.resolve()]
    settings.TEKTON_MEMORY_DIR = (tmp_path / "memory").resolve()
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "offline")
    monkeypatch.delenv("TEKTON_OFFLINE_LATENCY_MS", raising=False)
    return settings


# Names the tests may resolve; anything else does not resolve, so no test asks DNS.
TEST_HOSTS = {
    "localhost": "127.0.0.1",
    "receiver.test": "127.0.0.1",
    "public.example": "93.184.216.34",
}


def _test_getaddrinfo(host, port, *args, **kwargs):
    import ipaddress
    import socket

    try:
        ip = str(ipaddress.ip_address(str(host).strip("[]")))
    except ValueError:
        ip = TEST_HOSTS.get(str(host))
        if ip is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))]


@pytest.fixture(autouse=True)
def no_retry_after_left_over(monkeypatch):
    """A server's retry-after holds process-wide (swarm.providers.retry); one test's 429
    must not make the next test's first call wait."""
    from swarm.providers import retry

    monkeypatch.setattr(retry, "_NOT_BEFORE", {})


@pytest.fixture(autouse=True)
def hooks_stay_on_loopback(monkeypatch):
    """Hook URLs resolve from TEST_HOSTS only, and a delivery goes nowhere but loopback:
    whatever a test (or the schema fuzzer) creates, nothing leaves this machine."""
    import ipaddress

    from notifications import sending, urlcheck

    monkeypatch.setattr(urlcheck, "getaddrinfo", _test_getaddrinfo)
    real = sending.url_check

    def loopback_only(url):
        target = real(url)
        if not ipaddress.ip_address(target.address).is_loopback:
            raise urlcheck.UrlRefused(f"tests deliver to loopback only, not {target.address}")
        return target

    monkeypatch.setattr(sending, "url_check", loopback_only)


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Tekton Tests", "-c", "user.email=tests@tekton.invalid", *args],
        cwd=path,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def git_repo(tekton_settings) -> Path:
    """A small real git repository (README, a source file, a test file, one commit) under
    the allowed repository root."""
    path = Path(tekton_settings.TEKTON_REPO_ROOTS[0]) / "sample"
    (path / "src").mkdir(parents=True)
    (path / "tests").mkdir()
    (path / "README.md").write_text("# Sample\n\nA tiny service used by Tekton's tests.\n")
    (path / "src" / "app.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (path / "tests" / "test_app.py").write_text(
        "from src.app import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "Initial commit")
    venv_link(path)  # its tests run in the sandbox with pytest, as a real project's would
    return path


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="pw-for-tests-only")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="grace", password="pw-for-tests-only", is_staff=True
    )


@pytest.fixture
def otel_spans():
    """An SDK tracer provider with an in-memory exporter for one test (the process's
    provider is the no-op one otherwise); yields the exporter."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    from tekton_site.tracing import RunIdGenerator

    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=RunIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The API sets its global provider once per process; tests put theirs in and take it out.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback for the session: an S3-compatible endpoint URL that
    subprocesses reach too. Credentials are any strings."""
    from moto.server import ThreadedMotoServer

    from tests.streams.live import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "tekton-tests",
    "AWS_SECRET_ACCESS_KEY": "tekton-tests-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the moto server; returns (endpoint URL, bucket name, boto3 client)."""
    import uuid

    import boto3

    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"tekton-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return s3_server, bucket, client


@pytest.fixture
def delivered_run(user, git_repo, tekton_settings, tmp_path):
    """A succeeded run of `user` on git_repo with a committed branch, its patch, test
    evidence (one test newly passing, one newly failing) and a review asking to revise."""
    from runs.models import Run
    from tests.factories import RunFactory
    from tests.support.delivery import deliver, head_of

    tekton_settings.TEKTON_WORKSPACE_ROOT = tmp_path / "workspaces"
    run = RunFactory(
        owner=user,
        repo_path=str(git_repo),
        base_commit=head_of(git_repo),
        status=Run.Status.SUCCEEDED,
        goal="Add sub",
    )
    return deliver(run)
