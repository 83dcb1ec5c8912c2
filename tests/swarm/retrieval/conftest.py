"""Fixtures for retrieval: a fixture repository with distinct topics, real Milvus Lite (one
in-process instance per test module, a fresh namespace per test), and the fake OpenAI
server for the embeddings endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.retrieval import EmbeddingConfig, Retrieval, RetrievalConfig
from tests.fakes.llm_server import FakeLlmServer
from tests.swarm.conftest import git, make_repo

TOPICS = {
    "auth/tokens.py": '''"""API tokens: creation, hashing and revocation."""

import hashlib
import secrets


def token_create(user_id: int) -> str:
    """A new random API token for the user; only its hash is stored."""
    raw = secrets.token_urlsafe(32)
    _store(user_id, hashlib.sha256(raw.encode()).hexdigest())
    return raw


def token_revoke(token_hash: str) -> bool:
    """Revoke an API token so it can no longer authenticate requests."""
    return _delete(token_hash)


def _store(user_id, digest):
    pass


def _delete(digest):
    return True
''',
    "billing/invoice.py": '''"""Invoices: line items, tax and discounts."""


class Invoice:
    def __init__(self, lines):
        self.lines = lines

    def subtotal(self) -> float:
        return sum(qty * price for qty, price in self.lines)

    def apply_discount(self, percent: float) -> float:
        """Reduce the invoice total by a percentage discount (coupon codes)."""
        return self.subtotal() * (1 - percent / 100)

    def total_with_tax(self, rate: float) -> float:
        """The amount due including value added tax."""
        return self.subtotal() * (1 + rate)
''',
    "storage/s3.py": '''"""Object storage on an S3 bucket."""


def upload_file(bucket: str, key: str, path: str) -> str:
    """Upload a local file into the bucket under key and return its URL."""
    with open(path, "rb") as fh:
        data = fh.read()
    return _put(bucket, key, data)


def presigned_url(bucket: str, key: str, seconds: int = 3600) -> str:
    """A temporary download link for an object in the bucket."""
    return f"https://{bucket}.example/{key}?expires={seconds}"


def _put(bucket, key, data):
    return f"https://{bucket}.example/{key}"
''',
    "web/router.js": """// HTTP routes and middleware.

export function rateLimit(maxPerMinute) {
  // Throttle clients that send too many requests per minute.
  const seen = new Map();
  return (req, res, next) => {
    const n = (seen.get(req.ip) || 0) + 1;
    seen.set(req.ip, n);
    if (n > maxPerMinute) return res.status(429).end();
    next();
  };
}

export function healthRoute(req, res) {
  res.json({ status: "ok" });
}
""",
    "util/retry.go": """package util

import "time"

// Retry calls fn until it succeeds, sleeping with exponential backoff between attempts.
func Retry(attempts int, fn func() error) error {
	delay := 100 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil {
			return nil
		}
		time.Sleep(delay)
		delay *= 2
	}
	return err
}
""",
    "docs/deploy.md": """# Deploying

## Building the image

Run `docker build -t app .` and push the image to the registry.

## Rolling back

If a release misbehaves, roll back the deployment to the previous image tag with
`kubectl rollout undo deployment/app` and tell the on-call engineer.
""",
    "config/settings.toml": """[server]
port = 8080
workers = 4

[database]
url = "postgres://localhost/app"
pool_size = 10
""",
}

# query -> the file that answers it
TOPIC_QUERIES = {
    "revoke an api token": "auth/tokens.py",
    "apply a discount to an invoice": "billing/invoice.py",
    "upload a file to the bucket": "storage/s3.py",
    "throttle clients sending too many requests": "web/router.js",
    "retry with exponential backoff": "util/retry.go",
    "how do I roll back a bad release": "docs/deploy.md",
    "database connection pool size": "config/settings.toml",
}


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def topic_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "topics", TOPICS)


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory) -> Iterator[str]:
    """One in-process Milvus Lite for the module; tests keep apart by namespace."""
    path = str(tmp_path_factory.mktemp("milvus") / "milvus.db")
    yield path
    from milvus_lite import server_manager_instance

    server_manager_instance.release_server(path)


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def retrieval(lite_uri: str, namespace: str) -> Iterator[Retrieval]:
    r = Retrieval(RetrievalConfig(namespace=namespace, milvus_uri=lite_uri))
    yield r
    r.close()


@pytest.fixture
def fake_llm() -> Iterator[FakeLlmServer]:
    server = FakeLlmServer().start()
    yield server
    server.stop()


def openai_config(server: FakeLlmServer, **kw) -> EmbeddingConfig:
    return EmbeddingConfig(
        backend="openai",
        model=kw.pop("model", "text-embedding-fake"),
        base_url=server.openai_base_url,
        key_env=kw.pop("key_env", "TEKTON_TEST_EMBED_KEY"),
        **kw,
    )
