"""Publishing immutable, versioned datasets, on a local directory and on real MinIO."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from storage.dataset_versions import (
    MANIFEST_FORMAT,
    BaseMoved,
    DatasetIntegrityError,
    PublishedVersion,
    PublishRequest,
    blob_key,
    latest_key,
    latest_version,
    list_datasets,
    list_versions,
    manifest_key,
    merge_point,
    partition_of,
    publish_version,
    read_manifest,
    read_records,
    rollback,
    verify_version,
)
from storage.object_store import LocalObjectStore, ObjectStore, S3ObjectStore

NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def records(n: int, *, label: str = "cat", start: int = 0) -> list[dict[str, Any]]:
    # Deliberately out of order: the publisher sorts by item_id.
    return [
        {"item_id": f"item-{i:05d}", "label": label, "confidence": 0.9}
        for i in reversed(range(start, start + n))
    ]


def publish_request(
    publish_id: str, recs: list[dict[str, Any]] | None = None, /, **kw: Any
) -> PublishRequest:
    recs = records(3) if recs is None else recs
    fields: dict[str, Any] = {
        "dataset": "pets",
        "publish_id": publish_id,
        "campaigns": ("camp-1",),
        "created_by": "operator",
        "records": recs,
        "class_counts": {"cat": len(recs)},
        "agreement": {"krippendorff_alpha": 0.81},
    }
    fields.update(kw)  # may override publish_id too
    return PublishRequest(**fields)


def test_first_publish_writes_version_1(store: ObjectStore) -> None:
    req = publish_request(
        "pub-1", records(5), campaigns=("c1", "c2"), extra={"note": "first"}, shard_size=2
    )
    result = publish_version(store, req, now=NOW)

    manifest = read_manifest(store, "pets", 1)
    assert result == PublishedVersion(
        dataset="pets",
        version=1,
        parent=None,
        manifest_key="datasets/pets/versions/000001/manifest.json",
        manifest_uri=store.uri("datasets/pets/versions/000001/manifest.json"),
        item_count=5,
        created=True,
        bytes_written=manifest["stats"]["new_bytes"] + len(store.get(result.manifest_key)),
        bytes_total=manifest["stats"]["bytes"],
    )
    assert {
        k: v for k, v in manifest.items() if k not in ("files", "layout", "exports", "stats")
    } == {
        "format": MANIFEST_FORMAT,
        "dataset": "pets",
        "version": 1,
        "parent": None,
        "publish_id": "pub-1",
        "campaigns": ["c1", "c2"],
        "created_at": "2025-03-01T12:30:00+00:00",
        "created_by": "operator",
        "item_count": 5,
        "class_counts": {"cat": 5},
        "agreement": {"krippendorff_alpha": 0.81},
        "extra": {"note": "first"},
    }
    # 5 items of about 2 per partition: 4 partitions (a power of two), by hash of item_id.
    layout = manifest["layout"]
    assert layout["partitions"] == 4
    assert layout["base_version"] is None
    assert sum(layout["partition_items"]) == 5
    labels = [f for f in manifest["files"] if f["role"] == "labels"]
    assert [f["records"] for f in labels] == [n for n in layout["partition_items"] if n]
    assert {f["layer"] for f in labels} == {0}
    for f in manifest["files"]:
        assert f["key"] == blob_key("pets", f["sha256"])
        assert f["key"].startswith(f"datasets/pets/blobs/sha256/{f['sha256'][:2]}/")
        assert f["size"] == len(store.get(f["key"]))
    # One fragment per export format for every label layer.
    assert manifest["exports"]["formats"] == ["coco", "yolo", "voc", "jsonl"]
    fragments = [f for f in manifest["files"] if f["role"].startswith("export:")]
    assert sorted((f["labels_sha256"], f["role"]) for f in fragments) == sorted(
        (f["sha256"], f"export:{fmt}") for f in labels for fmt in manifest["exports"]["formats"]
    )
    assert manifest["stats"]["files"] == len({f["key"] for f in manifest["files"]})
    assert manifest["stats"]["new_bytes"] == manifest["stats"]["bytes"]  # all new
    # The manifest is stored with sorted keys and indent=2.
    raw = store.get(result.manifest_key).decode()
    assert raw == json.dumps(manifest, sort_keys=True, indent=2) + "\n"

    got = list(read_records(store, "pets", 1))
    assert got == sorted(records(5), key=lambda r: r["item_id"])
    assert latest_version(store, "pets") == 1
    assert json.loads(store.get(latest_key("pets"))) == {"version": 1, "sequence": 1}
    assert list_versions(store, "pets") == [1]
    assert list_datasets(store) == ["pets"]
    assert verify_version(store, "pets", 1) == []


def test_second_publish_has_parent_and_reuses_unchanged_partitions(store: ObjectStore) -> None:
    first = publish_version(store, publish_request("pub-1", records(25), shard_size=10), now=NOW)
    changed = records(25)
    changed[0] = {**changed[0], "label": "dog"}  # item-00024
    second = publish_version(store, publish_request("pub-2", changed, shard_size=10), now=NOW)

    assert (first.version, second.version, second.parent, second.created) == (1, 2, 1, True)
    m1, m2 = read_manifest(store, "pets", 1), read_manifest(store, "pets", 2)
    assert m2["layout"]["base_version"] == 1
    assert m1["layout"]["partitions"] == m2["layout"]["partitions"] == 4
    touched = partition_of("item-00024", 4)
    labels1 = {f["partition"]: f for f in m1["files"] if f["role"] == "labels"}
    labels2 = [f for f in m2["files"] if f["role"].startswith("labels")]
    for f in labels2:
        if f["partition"] != touched:
            assert f == labels1[f["partition"]]  # the very same file, pinned the same way
    delta = [f for f in labels2 if f["role"] == "labels-delta"]
    assert [(f["partition"], f["layer"], f["records"], f["deletes"]) for f in delta] == [
        (touched, 1, 1, 0)
    ]
    # Only the delta and its export fragments are new, beside the manifest. (These records
    # have no image size, so COCO, YOLO and VOC all render the same "skip" line: one blob.)
    new_keys = {f["key"] for f in m2["files"]} - {f["key"] for f in m1["files"]}
    assert new_keys == {
        f["key"] for f in m2["files"] if (f["partition"], f["layer"]) == (touched, 1)
    }
    assert len(new_keys) == 3
    assert m2["stats"]["new_files"] == 3
    assert second.bytes_written == m2["stats"]["new_bytes"] + len(store.get(second.manifest_key))
    assert latest_version(store, "pets") == 2
    assert json.loads(store.get(latest_key("pets"))) == {"version": 2, "sequence": 2}
    assert list(read_records(store, "pets", 2))[-1]["label"] == "dog"
    assert list(read_records(store, "pets", 1))[-1]["label"] == "cat"
    assert verify_version(store, "pets", 2) == []


def test_same_publish_id_twice_returns_the_first_version(store: ObjectStore) -> None:
    first = publish_version(store, publish_request("pub-1"), now=NOW)
    again = publish_version(
        store, publish_request("pub-1", records(7)), now=NOW + timedelta(hours=1)
    )

    assert again.version == first.version == 1
    assert again.created is False
    assert again.item_count == 3
    assert list_versions(store, "pets") == [1]
    assert json.loads(store.get("datasets/pets/publishes/pub-1.json"))["version"] == 1


def test_racing_publishers_never_share_a_version(store_env: Any) -> None:
    n = 20
    stores = [store_env.make() for _ in range(n)]
    results: dict[int, PublishedVersion] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            req = publish_request(f"pub-{i}", records(4, start=i * 100))
            results[i] = publish_version(stores[i], req, now=NOW)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(r.version for r in results.values()) == list(range(1, n + 1))
    assert all(r.created for r in results.values())
    reader = store_env.make()
    assert list_versions(reader, "pets") == list(range(1, n + 1))
    assert latest_version(reader, "pets") == n
    for i, result in results.items():
        manifest = read_manifest(reader, "pets", result.version)
        assert manifest["publish_id"] == f"pub-{i}"
        assert manifest["parent"] == (None if result.version == 1 else result.version - 1)
        assert [r["item_id"] for r in read_records(reader, "pets", result.version)] == [
            f"item-{j:05d}" for j in range(i * 100, i * 100 + 4)
        ]
        assert verify_version(reader, "pets", result.version) == []
    assert_nothing_overwritten(store_env, reader)


def assert_nothing_overwritten(store_env: Any, reader: ObjectStore) -> None:
    """Only the ``latest`` pointer is ever replaced (by compare-and-swap); every other file is
    written once. On S3 the bucket's versions prove it; locally, every content-addressed blob
    still holds the content its name is the hash of."""
    if isinstance(reader, S3ObjectStore):
        versions: dict[str, int] = {}
        paginator = reader.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=reader.bucket, Prefix=reader.prefix):
            for v in page.get("Versions", []):
                versions[v["Key"]] = versions.get(v["Key"], 0) + 1
        rewritten = {k for k, count in versions.items() if count > 1}
        assert rewritten == {f"{reader.prefix}datasets/pets/latest.json"}
    else:
        blobs = list(reader.list("datasets/pets/blobs/"))
        assert len(blobs) >= 20
        for key in blobs:
            assert hashlib.sha256(reader.get(key)).hexdigest() == key.rsplit("/", 1)[1]


def test_verify_names_a_corrupted_blob(store_env: Any, store: ObjectStore) -> None:
    result = publish_version(store, publish_request("pub-1", records(30), shard_size=10), now=NOW)
    assert verify_version(store, "pets", result.version) == []

    victim = next(f for f in read_manifest(store, "pets", 1)["files"] if f["role"] == "labels")
    original = store.get(victim["key"])
    store_env.overwrite(victim["key"], original.replace(b"cat", b"dog"))  # same size

    problems = verify_version(store, "pets", 1)
    assert len(problems) == 1
    assert victim["key"] in problems[0]
    if store_env.backend == "s3":
        # The bucket keeps versions and the manifest pinned the committed one: the version
        # still reads what it committed, and verify says the key was overwritten.
        assert "replaced after the commit" in problems[0]
        assert [r["label"] for r in read_records(store, "pets", 1)] == ["cat"] * 30
        return
    assert "sha256" in problems[0]
    with pytest.raises(DatasetIntegrityError, match=victim["key"]):
        list(read_records(store, "pets", 1))

    store_env.overwrite(victim["key"], original + b"{}\n")
    assert [victim["key"] in p and "size" in p for p in verify_version(store, "pets", 1)] == [True]


def test_verify_reports_missing_manifest(store: ObjectStore) -> None:
    assert verify_version(store, "pets", 3) == [f"{manifest_key('pets', 3)}: missing"]


def test_crash_between_commit_and_pointer_move(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_version(store, publish_request("pub-1"), now=NOW)

    real_cas = store.compare_and_swap
    calls = 0

    def crash_once(key: str, data: bytes, expected_etag: str | None) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("worker died")
        return real_cas(key, data, expected_etag)

    monkeypatch.setattr(store, "compare_and_swap", crash_once)
    with pytest.raises(ConnectionError):
        publish_version(store, publish_request("pub-2"), now=NOW)

    # Committed, but the pointer lags: readers still see version 1.
    assert list_versions(store, "pets") == [1, 2]
    assert latest_version(store, "pets") == 1

    # The activity's retry returns the committed version and repairs the pointer.
    retried = publish_version(store, publish_request("pub-2"), now=NOW)
    assert (retried.version, retried.created) == (2, False)
    assert latest_version(store, "pets") == 2

    nxt = publish_version(store, publish_request("pub-3"), now=NOW)
    assert (nxt.version, nxt.parent, nxt.created) == (3, 2, True)
    assert latest_version(store, "pets") == 3


def test_crash_between_commit_and_marker_while_others_publish(
    store_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing, other = store_env.make(), store_env.make()
    real_create = crashing.create

    def no_marker(key: str, data: bytes) -> bool:
        if "/publishes/" in key:
            raise ConnectionError("worker died")
        return bool(real_create(key, data))

    monkeypatch.setattr(crashing, "create", no_marker)
    with pytest.raises(ConnectionError):
        publish_version(crashing, publish_request("pub-a"), now=NOW)
    monkeypatch.undo()
    assert list_versions(other, "pets") == [1]
    assert latest_version(other, "pets") == 1

    # Others publish meanwhile and move the pointer past the crashed commit.
    assert publish_version(other, publish_request("pub-b"), now=NOW).version == 2
    assert publish_version(other, publish_request("pub-c"), now=NOW).version == 3
    assert latest_version(other, "pets") == 3

    retried = publish_version(crashing, publish_request("pub-a"), now=NOW)
    assert (retried.version, retried.created) == (1, False)
    assert list_versions(other, "pets") == [1, 2, 3]
    assert latest_version(other, "pets") == 3  # never moved backwards
    assert (
        publish_version(other, publish_request("pub-a"), now=NOW).version == 1
    )  # marker now there


def test_pointer_lagging_behind_a_committed_manifest(store: ObjectStore) -> None:
    publish_version(store, publish_request("pub-1"), now=NOW)
    # Another publisher committed version 2 and died before moving the pointer.
    orphan = dict(read_manifest(store, "pets", 1), version=2, parent=1, publish_id="pub-x")
    assert store.create(manifest_key("pets", 2), json.dumps(orphan).encode())
    assert latest_version(store, "pets") == 1

    result = publish_version(store, publish_request("pub-2"), now=NOW)
    assert (result.version, result.parent) == (3, 2)
    assert latest_version(store, "pets") == 3
    assert list_versions(store, "pets") == [1, 2, 3]


def test_manifests_are_never_overwritten(store: ObjectStore) -> None:
    result = publish_version(store, publish_request("pub-1"), now=NOW)
    before = store.get(result.manifest_key)
    assert store.create(result.manifest_key, b"{}") is False
    assert store.get(result.manifest_key) == before
    assert verify_version(store, "pets", 1) == []


def test_rollback_moves_the_pointer_back_and_publish_continues(store: ObjectStore) -> None:
    for i in range(1, 4):
        publish_version(store, publish_request(f"pub-{i}"), now=NOW)
    assert rollback(store, "pets", 1) == 4  # the pointer's sequence
    assert latest_version(store, "pets") == 1

    # A retry of an old publish does not undo the rollback...
    assert publish_version(store, publish_request("pub-3"), now=NOW).version == 3
    assert latest_version(store, "pets") == 1
    # ...and a new one takes the next free number.
    result = publish_version(store, publish_request("pub-4"), now=NOW)
    assert (result.version, result.parent) == (4, 3)
    assert latest_version(store, "pets") == 4
    assert json.loads(store.get(latest_key("pets"))) == {"version": 4, "sequence": 5}

    with pytest.raises(KeyError):
        rollback(store, "pets", 9)


def test_a_merge_whose_number_was_taken_commits_nothing_and_says_so(store: ObjectStore) -> None:
    """Two campaigns merging into one dataset at once: the one that loses the race must merge
    again, or the version it commits would drop the other's labels."""
    publish_version(store, publish_request("pub-1", records(3)), now=NOW)
    assert merge_point(store, "pets") == (1, 2)
    # Another publisher commits version 2 while this one merges version 1...
    publish_version(store, publish_request("other", records(2, start=100)), now=NOW)
    with pytest.raises(BaseMoved, match="version 2 is taken"):
        publish_version(store, publish_request("mine", records(4), version=2), now=NOW)
    assert list_versions(store, "pets") == [1, 2]
    assert read_manifest(store, "pets", 2)["publish_id"] == "other"
    # ...and merging again from version 2 commits version 3.
    assert merge_point(store, "pets") == (2, 3)
    result = publish_version(store, publish_request("mine", records(4), version=3), now=NOW)
    assert (result.version, result.parent, result.created) == (3, 2, True)
    # A retry of a publish that did commit returns its version, whatever number it was given.
    again = publish_version(store, publish_request("mine", records(4), version=4), now=NOW)
    assert (again.version, again.created) == (3, False)


def test_a_merge_lost_at_the_commit_itself_commits_nothing(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race lost between the check and the write of the manifest: its create fails."""
    publish_version(store, publish_request("pub-1"), now=NOW)
    real_create = store.create

    def overtaken(key: str, data: bytes) -> bool:
        if key == manifest_key("pets", 2):
            monkeypatch.setattr(store, "create", real_create)
            publish_version(store, publish_request("other", records(1, start=50)), now=NOW)
        return real_create(key, data)

    monkeypatch.setattr(store, "create", overtaken)
    with pytest.raises(BaseMoved):
        publish_version(store, publish_request("mine", version=2), now=NOW)
    assert list_versions(store, "pets") == [1, 2]
    assert read_manifest(store, "pets", 2)["publish_id"] == "other"
    assert latest_version(store, "pets") == 2


def test_the_merge_point_follows_a_lagging_pointer_but_not_a_rollback(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert merge_point(store, "pets") == (None, 1)
    for i in range(1, 4):
        publish_version(store, publish_request(f"pub-{i}"), now=NOW)
    rollback(store, "pets", 1)
    # Versions 2 and 3 were rolled back: a merge starts from 1, and takes number 4.
    assert merge_point(store, "pets") == (1, 4)

    # Version 4 is committed but its publisher dies before moving the pointer: its labels are
    # part of the dataset, so the next merge starts from it.
    real_cas = store.compare_and_swap

    def crash(key: str, data: bytes, expected_etag: str | None) -> bool:
        raise ConnectionError("worker died")

    monkeypatch.setattr(store, "compare_and_swap", crash)
    with pytest.raises(ConnectionError):
        publish_version(store, publish_request("pub-4"), now=NOW)
    monkeypatch.setattr(store, "compare_and_swap", real_cas)
    assert latest_version(store, "pets") == 1
    assert merge_point(store, "pets") == (4, 5)


def test_empty_dataset_version(store: ObjectStore) -> None:
    result = publish_version(store, publish_request("pub-0", []), now=NOW)
    assert result.item_count == 0
    assert read_manifest(store, "pets", 1)["files"] == []
    assert list(read_records(store, "pets", 1)) == []
    assert verify_version(store, "pets", 1) == []


def test_datasets_are_separate(store: ObjectStore) -> None:
    publish_version(store, publish_request("p1", dataset="b-set"), now=NOW)
    publish_version(store, publish_request("p1", dataset="a.set"), now=NOW)
    publish_version(store, publish_request("p2", dataset="a.set"), now=NOW)
    assert list_datasets(store) == ["a.set", "b-set"]
    assert list_versions(store, "a.set") == [1, 2]
    assert latest_version(store, "b-set") == 1
    assert latest_version(store, "nothing") is None


def test_created_at_is_utc(store: ObjectStore) -> None:
    local = datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    publish_version(store, publish_request("pub-1"), now=local)
    assert read_manifest(store, "pets", 1)["created_at"] == "2025-03-01T12:30:00+00:00"


def test_bucket_versioning_stays_enabled(request: pytest.FixtureRequest, s3_bucket: str) -> None:
    client = request.getfixturevalue("minio_server").boto3_client()
    store = S3ObjectStore(client, s3_bucket, "versioning-check")
    publish_version(store, publish_request("pub-1"), now=NOW)
    publish_version(store, publish_request("pub-2"), now=NOW)
    _, etag = store.get_with_etag(latest_key("pets"))
    assert store.compare_and_swap(latest_key("pets"), b"{}", etag)  # overwrites keep history
    assert client.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    history = client.list_object_versions(
        Bucket=s3_bucket, Prefix="versioning-check/" + latest_key("pets")
    )
    assert len(history["Versions"]) == 3  # one per pointer move


def test_processes_racing_on_a_local_root(tmp_path: Path) -> None:
    """Separate processes (not only threads) share one local root safely."""
    script = textwrap.dedent(
        """
        import sys
        from datetime import UTC, datetime
        from pathlib import Path
        from storage.dataset_versions import PublishRequest, publish_version
        from storage.object_store import LocalObjectStore

        root, i = Path(sys.argv[1]), int(sys.argv[2])
        recs = [{"item_id": f"p{i}-{j}", "label": "cat"} for j in range(50)]
        req = PublishRequest("pets", f"proc-{i}", ("c",), "op", recs, {"cat": 50}, {})
        print(publish_version(LocalObjectStore(root), req, now=datetime.now(UTC)).version)
        """
    )
    n = 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(i)], stdout=subprocess.PIPE, text=True
        )
        for i in range(n)
    ]
    versions = sorted(int(p.communicate(timeout=120)[0]) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert versions == list(range(1, n + 1))
    store = LocalObjectStore(tmp_path)
    assert latest_version(store, "pets") == n
    assert all(verify_version(store, "pets", v) == [] for v in versions)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": "Pets"}, "dataset"),
        ({"dataset": "-pets"}, "dataset"),
        ({"dataset": "a/b"}, "dataset"),
        ({"dataset": "x" * 64}, "dataset"),
        ({"publish_id": "../up"}, "publish_id"),
        ({"publish_id": ""}, "publish_id"),
        ({"shard_size": 0}, "shard_size"),
        ({"created_by": ""}, "created_by"),
        ({"records": [{"label": "cat"}]}, "item_id"),
        ({"records": [{"item_id": "a"}, {"item_id": "a"}]}, "duplicate"),
        ({"agreement": {"alpha": float("nan")}}, "agreement"),
        ({"extra": {"when": datetime(2025, 1, 1)}}, "extra"),
    ],
    ids=["upper", "leading-dash", "slash", "too-long", "publish-id-path", "publish-id-empty",
         "shard-size", "created-by", "no-item-id", "duplicate-item-id", "nan-agreement",
         "extra-not-json"],
)  # fmt: skip
def test_bad_requests_are_refused(store: ObjectStore, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        publish_version(store, publish_request("pub-1", **changes), now=NOW)
    assert list(store.list("")) == []


def test_naive_now_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="now"):
        publish_version(store, publish_request("pub-1"), now=datetime(2025, 1, 1))
