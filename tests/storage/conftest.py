"""Store fixtures for the storage tests: every test runs on a local directory and on real MinIO."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.object_store import LocalObjectStore, ObjectStore, S3ObjectStore


@dataclass
class StoreEnv:
    """One backend for one test, with ways to reach it behind the store's back."""

    backend: str
    # A fresh store object on the same root, or bucket and prefix (one per thread in races).
    make: Callable[[], ObjectStore]
    # Overwrite a key directly (local file, or a plain S3 put), ignoring write-once rules.
    overwrite: Callable[[str, bytes], None]
    s3_client: Any = None
    bucket: str | None = None


@pytest.fixture(scope="module")
def s3_bucket(request: pytest.FixtureRequest) -> str:
    """A versioned bucket of its own for each test module."""
    minio = request.getfixturevalue("minio_server")
    module = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.lower()).strip("-")[-30:]
    name = f"qs-{module}-{uuid.uuid4().hex[:8]}".replace("--", "-")
    minio.ensure_bucket(name, versioning=True)
    return name


def _local_env(root: Path) -> StoreEnv:
    def overwrite(key: str, data: bytes) -> None:
        root.joinpath(*key.split("/")).write_bytes(data)

    return StoreEnv("local", lambda: LocalObjectStore(root), overwrite)


def _s3_env(request: pytest.FixtureRequest) -> StoreEnv:
    minio = request.getfixturevalue("minio_server")
    bucket = request.getfixturevalue("s3_bucket")
    prefix = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix)
    client = minio.boto3_client()

    def make() -> ObjectStore:
        # boto3 clients are thread-safe once built; building them is not, so build here.
        return S3ObjectStore(minio.boto3_client(), bucket, prefix)

    def overwrite(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)

    return StoreEnv("s3", make, overwrite, s3_client=client, bucket=bucket)


@pytest.fixture(params=["local", "s3"], ids=["local", "s3"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> StoreEnv:
    if request.param == "local":
        return _local_env(tmp_path / "store")
    return _s3_env(request)


@pytest.fixture
def store(store_env: StoreEnv) -> ObjectStore:
    return store_env.make()
