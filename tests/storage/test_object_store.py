"""The two ObjectStore backends behave the same (local directory, real MinIO)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.settings import S3Settings, StoreSettings
from storage.object_store import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    open_store,
)


def test_create_is_write_once(store: ObjectStore) -> None:
    assert store.create("a/b.txt", b"first") is True
    assert store.create("a/b.txt", b"second") is False
    assert store.get("a/b.txt") == b"first"
    assert store.exists("a/b.txt")


def test_create_empty_object(store: ObjectStore) -> None:
    assert store.create("empty", b"") is True
    assert store.get("empty") == b""


def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    assert not store.exists("nope/x")
    with pytest.raises(ObjectNotFound):
        store.get("nope/x")
    with pytest.raises(KeyError):  # ObjectNotFound is a KeyError
        store.get_with_etag("nope/x")


def test_cas_with_current_etag_succeeds_and_stale_etag_fails(store: ObjectStore) -> None:
    store.create("ptr.json", b"v1")
    data, etag1 = store.get_with_etag("ptr.json")
    assert data == b"v1"

    assert store.compare_and_swap("ptr.json", b"v2", etag1) is True
    data, etag2 = store.get_with_etag("ptr.json")
    assert data == b"v2"
    assert etag2 != etag1

    assert store.compare_and_swap("ptr.json", b"v3", etag1) is False  # stale
    assert store.get("ptr.json") == b"v2"
    assert store.compare_and_swap("ptr.json", b"v3", etag2) is True
    assert store.get("ptr.json") == b"v3"


def test_cas_with_none_creates_only_when_absent(store: ObjectStore) -> None:
    assert store.compare_and_swap("p", b"one", None) is True
    assert store.compare_and_swap("p", b"two", None) is False
    assert store.get("p") == b"one"


def test_cas_with_etag_on_missing_key_fails(store: ObjectStore) -> None:
    store.create("there", b"x")
    _, etag = store.get_with_etag("there")
    assert store.compare_and_swap("not-there", b"y", etag) is False
    assert not store.exists("not-there")


def test_list_by_prefix_is_sorted_string_prefix(store: ObjectStore) -> None:
    keys = ["d/b/2", "d/a/1", "d/ab/3", "d/a/0", "e/x", "top"]
    for key in keys:
        store.create(key, key.encode())
    # A compare-and-swap leaves no helper files in listings.
    _, etag = store.get_with_etag("d/a/0")
    store.compare_and_swap("d/a/0", b"new", etag)

    assert list(store.list("d/a/")) == ["d/a/0", "d/a/1"]
    assert list(store.list("d/a")) == ["d/a/0", "d/a/1", "d/ab/3"]  # a plain string prefix
    assert list(store.list("d/")) == ["d/a/0", "d/a/1", "d/ab/3", "d/b/2"]
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("zzz/")) == []


def test_uri_and_describe(store_env: Any, store: ObjectStore) -> None:
    if store_env.backend == "local":
        assert store.describe().startswith("file:///")
        assert store.uri("a/b") == store.describe() + "/a/b"
    else:
        assert store.describe().startswith(f"s3://{store_env.bucket}/")
        assert store.uri("a/b") == store.describe() + "/a/b"


def test_racing_creates_have_exactly_one_winner(store_env: Any) -> None:
    stores = [store_env.make() for _ in range(8)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def run(i: int) -> None:
        barrier.wait()
        results.append(stores[i].create("race/key", f"writer {i}".encode()))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert stores[0].get("race/key").startswith(b"writer ")


def test_racing_cas_loses_no_update(store_env: Any) -> None:
    """A counter incremented by CAS retry loops in several threads ends at the total."""
    workers, increments = 4, 10
    stores = [store_env.make() for _ in range(workers)]
    stores[0].create("counter", b"0")

    def run(s: ObjectStore) -> None:
        for _ in range(increments):
            while True:
                data, etag = s.get_with_etag("counter")
                if s.compare_and_swap("counter", str(int(data) + 1).encode(), etag):
                    break

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].get("counter") == str(workers * increments).encode()


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "../up", "a/../b", "a/..", "a//b", "./a", "a/.quorum-lock-x", "a/\0b"],
    ids=["empty", "absolute", "parent", "inner-parent", "trailing-parent", "empty-segment",
         "dot", "reserved", "nul"],
)  # fmt: skip
def test_local_refuses_bad_keys(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(ValueError):
        store.create(key, b"x")
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.compare_and_swap(key, b"x", None)
    assert not (tmp_path / "up").exists()


def test_local_refuses_bad_prefix(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ValueError):
        list(store.list("../"))
    with pytest.raises(ValueError):
        list(store.list("/etc"))


def test_local_key_under_a_file_is_not_found(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.create("a", b"file")
    assert not store.exists("a/b")
    with pytest.raises(ObjectNotFound):
        store.get("a/b")
    with pytest.raises(ObjectNotFound):
        store.get("missing-dir/b")


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store(StoreSettings(), S3Settings(), tmp_path)
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "data"  # keys start with datasets/
    custom = open_store(StoreSettings(local_root=str(tmp_path / "x")), S3Settings(), tmp_path)
    assert isinstance(custom, LocalObjectStore)
    assert custom.root == tmp_path / "x"


def test_open_store_s3(request: pytest.FixtureRequest, s3_bucket: str, tmp_path: Path) -> None:
    minio = request.getfixturevalue("minio_server")
    store = open_store(
        StoreSettings(backend="s3", bucket=s3_bucket, prefix="from-settings/"),
        S3Settings(
            endpoint_url=minio.endpoint_url,
            access_key_id=SecretStr(minio.access_key),
            secret_access_key=SecretStr(minio.secret_key),
        ),
        tmp_path,
    )
    assert isinstance(store, S3ObjectStore)
    assert store.describe() == f"s3://{s3_bucket}/from-settings"
    assert store.create("k", b"v") is True
    assert store.get("k") == b"v"
    head = minio.boto3_client().head_object(Bucket=s3_bucket, Key="from-settings/k")
    assert head["ContentLength"] == 1
