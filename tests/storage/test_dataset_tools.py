"""Operating on published versions: diff, deprecate, roll back, download; both backends."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from storage.dataset_tools import (
    describe_datasets,
    describe_versions,
    diff_versions,
    download_version,
    show_version,
)
from storage.dataset_versions import (
    DatasetNotFound,
    PublishRequest,
    VersionDeprecated,
    VersionNotFound,
    deprecate_version,
    deprecation_key,
    latest_version,
    publish_version,
    read_manifest,
    read_records,
    rollback,
    verify_version,
)
from storage.exports import export_records
from storage.object_store import ObjectStore, S3ObjectStore
from tests.storage.conftest import StoreEnv
from tests.storage.samples import ONTOLOGY, full_record, simple_records

NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def publish(store: ObjectStore, publish_id: str, recs: list[dict[str, Any]], **kw: Any) -> int:
    fields: dict[str, Any] = {
        "dataset": "pets",
        "publish_id": publish_id,
        "campaigns": ("cmp_x",),
        "created_by": "test",
        "records": recs,
        "class_counts": {"cat": len(recs)},
        "agreement": {"mean_item_agreement": 0.9},
        "extra": {"campaign_name": "pets", "ontology": ONTOLOGY},
        "shard_size": 20,
    }
    fields.update(kw)
    return publish_version(store, PublishRequest(**fields), now=NOW).version


def three_versions(store: ObjectStore) -> list[dict[str, Any]]:
    recs = simple_records(50)
    publish(store, "v1", recs)
    second = [dict(r) for r in recs[5:]]  # removes 0..4
    second[0]["labels"] = ["dog"]  # cmp_x-000005
    second[1]["confidence"] = 0.5  # cmp_x-000006
    second[2]["objects"] = second[2]["objects"][:1]  # cmp_x-000007 loses its box
    second += simple_records(2, prefix="cmp_y")  # adds two
    publish(store, "v2", second)
    publish(store, "v3", second)
    return second


def test_diff_names_added_removed_and_changed_items(store: ObjectStore) -> None:
    three_versions(store)
    diff = diff_versions(store, "pets", 1, 2)
    assert diff.added == ["cmp_y-000000", "cmp_y-000001"]
    assert diff.removed == [f"cmp_x-{i:06d}" for i in range(5)]
    assert [c.item_id for c in diff.changed] == ["cmp_x-000005", "cmp_x-000006", "cmp_x-000007"]
    labels = diff.changed[0].fields
    assert list(labels) == ["labels"]
    assert (labels["labels"].before, labels["labels"].after) == (["cat"], ["dog"])
    confidence = diff.changed[1].fields["confidence"]
    assert (confidence.before, confidence.after) == (0.9, 0.5)
    objects = diff.changed[2].fields["objects"]
    assert objects.before["by_class"] == {"box:car": 1, "polygon:road": 1, "tag:cat": 1}
    assert objects.after["by_class"] == {"tag:cat": 1}
    assert diff.field_counts() == {"confidence": 1, "labels": 1, "objects": 1}

    as_json = diff.to_json(limit=2)
    assert as_json["counts"] == {"added": 2, "removed": 5, "changed": 3}
    assert len(as_json["removed"]) == 2 and as_json["truncated"] is True
    assert json.loads(json.dumps(as_json)) == as_json

    backwards = diff_versions(store, "pets", 2, 1)
    assert (backwards.added, backwards.removed) == (diff.removed, diff.added)
    assert diff_versions(store, "pets", 2, 3).unchanged
    with pytest.raises(VersionNotFound, match="no version 9"):
        diff_versions(store, "pets", 1, 9)


def test_deprecate_writes_a_marker_once_and_never_deletes(store: ObjectStore) -> None:
    three_versions(store)
    marked = deprecate_version(store, "pets", 2, "wrong ontology", "alice", now=NOW)
    assert (marked.version, marked.reason, marked.by, marked.created) == (
        2,
        "wrong ontology",
        "alice",
        True,
    )
    again = deprecate_version(store, "pets", 2, "other reason", "bob")
    assert (again.reason, again.by, again.created) == ("wrong ontology", "alice", False)
    assert json.loads(store.get(deprecation_key("pets", 2)))["reason"] == "wrong ontology"

    # The version is still there, whole, and says it is deprecated.
    assert verify_version(store, "pets", 2) == []
    assert show_version(store, "pets", 2)["deprecated"]["by"] == "alice"
    assert show_version(store, "pets", 3)["deprecated"] is None
    summaries = describe_versions(store, "pets")
    assert [(s.version, s.deprecated is not None, s.latest) for s in summaries] == [
        (1, False, False),
        (2, True, False),
        (3, False, True),
    ]
    with pytest.raises(ValueError, match="reason"):
        deprecate_version(store, "pets", 1, " ", "alice")
    with pytest.raises(VersionNotFound):
        deprecate_version(store, "pets", 7, "x", "alice")


def test_rollback_refuses_a_deprecated_version_unless_forced(store: ObjectStore) -> None:
    three_versions(store)
    deprecate_version(store, "pets", 2, "bad", "alice")
    with pytest.raises(VersionDeprecated, match="deprecated"):
        rollback(store, "pets", 2)
    assert latest_version(store, "pets") == 3
    rollback(store, "pets", 2, allow_deprecated=True)
    assert latest_version(store, "pets") == 2
    rollback(store, "pets", 1)
    assert latest_version(store, "pets") == 1
    assert show_version(store, "pets", 1)["latest"] is True
    # The next publish builds on version 1 (what latest names) and takes number 4.
    assert publish(store, "v4", simple_records(50)) == 4
    assert read_manifest(store, "pets", 4)["layout"]["base_version"] == 1


def test_download_writes_labels_exports_and_manifest(store: ObjectStore, tmp_path: Path) -> None:
    recs = [full_record(f"cmp_x-{i}") for i in range(3)] + [
        full_record("cmp_x-9", width=None, height=None)
    ]
    publish(store, "v1", recs)
    target = tmp_path / "out"
    result = download_version(store, "pets", 1, target)

    assert (target / "manifest.json").read_bytes() == store.get(
        "datasets/pets/versions/000001/manifest.json"
    )
    lines = (target / "labels.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == list(read_records(store, "pets", 1))
    assert sorted(result.exports) == ["coco", "jsonl", "voc", "yolo"]
    assert {e["source"] for e in result.exports.values()} == {"stored fragments"}
    assert result.exports["coco"]["skipped"] == {"image size unknown": 1}
    assert json.loads((target / "exports.json").read_text()) == result.exports

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(target / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 3
    assert coco.annToMask(coco.loadAnns(coco.getAnnIds())[0]).sum() == 50
    assert (target / "yolo" / "pose" / "labels" / "cmp_x-0.txt").is_file()
    assert (target / "voc" / "Annotations" / "cmp_x-2.xml").is_file()
    assert len((target / "jsonl" / "output.manifest").read_text().splitlines()) == 4

    # What is assembled from stored fragments is what rendering the records gives.
    expected = export_records(
        recs,
        ONTOLOGY,
        dataset="pets",
        info={"dataset": "pets", "version": 1, "created_at": NOW.isoformat()},
    )
    for export in expected.values():
        for path, data in export.files.items():
            assert (target / path).read_bytes() == data, path
    assert sorted(result.files) == sorted(
        {"manifest.json", "labels.jsonl", "exports.json"}
        | {p for e in expected.values() for p in e.files}
    )


def test_download_only_the_formats_asked_for(store: ObjectStore, tmp_path: Path) -> None:
    publish(store, "v1", simple_records(5))
    result = download_version(store, "pets", 1, tmp_path / "out", formats=("coco", "voc"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "coco",
        "exports.json",
        "labels.jsonl",
        "manifest.json",
        "voc",
    ]
    assert sorted(result.exports) == ["coco", "voc"]


def test_download_refuses_a_non_empty_directory_and_leaves_nothing_half_written(
    store: ObjectStore, tmp_path: Path
) -> None:
    publish(store, "v1", simple_records(5))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        download_version(store, "pets", 1, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    download_version(store, "pets", 1, empty, formats=("jsonl",))
    assert (empty / "jsonl" / "output.manifest").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".quorum-download-")]


def test_download_checks_every_hash(store_env: StoreEnv, tmp_path: Path) -> None:
    if store_env.backend != "local":
        pytest.skip("on a versioned bucket the pinned object version is read, see verify")
    store = store_env.make()
    publish(store, "v1", simple_records(10))
    fragment = next(
        f for f in read_manifest(store, "pets", 1)["files"] if f["role"] == "export:coco"
    )
    store_env.overwrite(fragment["key"], b"{}\n")
    with pytest.raises(Exception, match=fragment["key"]):
        download_version(store, "pets", 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_renders_formats_a_version_was_published_without(
    store: ObjectStore, tmp_path: Path
) -> None:
    publish(store, "v1", simple_records(4), exports=("coco",))
    assert read_manifest(store, "pets", 1)["exports"]["formats"] == ["coco"]
    result = download_version(store, "pets", 1, tmp_path / "out", formats=("coco", "yolo"))
    assert result.exports["coco"]["source"] == "stored fragments"
    assert result.exports["yolo"]["source"] == "rendered from the records"
    assert (tmp_path / "out" / "yolo" / "detect" / "labels" / "cmp_x-000000.txt").is_file()


def test_listing_and_unknown_names(store: ObjectStore) -> None:
    three_versions(store)
    publish(store, "o1", simple_records(3), dataset="other")
    summaries = describe_datasets(store)
    assert [(d.name, d.versions, d.latest) for d in summaries] == [
        ("other", [1], 1),
        ("pets", [1, 2, 3], 3),
    ]
    with pytest.raises(DatasetNotFound, match="no dataset named 'nope'"):
        describe_versions(store, "nope")
    with pytest.raises(DatasetNotFound, match="'nope'"):
        show_version(store, "nope", 1)
    with pytest.raises(VersionNotFound, match=r"no version 8 \(versions: 1, 2, 3\)"):
        show_version(store, "pets", 8)


def test_s3_manifest_pins_object_versions(store_env: StoreEnv) -> None:
    if store_env.backend != "s3":
        pytest.skip("object versions are an S3 feature")
    store = store_env.make()
    publish(store, "v1", simple_records(10))
    files = read_manifest(store, "pets", 1)["files"]
    assert all(f.get("version_id") for f in files)
    assert store.ensure_versioning() is True
    # Each pinned version id is the object's version when it was committed.
    for f in files[:3]:
        assert store.version_of(f["key"]) == f["version_id"]
        assert (
            hashlib.sha256(store.get_version(f["key"], f["version_id"])).hexdigest()
            == (f["sha256"])
        )


def test_publish_turns_bucket_versioning_on_but_respects_a_suspension(
    request: pytest.FixtureRequest,
) -> None:
    minio = request.getfixturevalue("minio_server")
    client = minio.boto3_client()
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    minio.ensure_bucket(fresh, versioning=False)
    assert "Status" not in client.get_bucket_versioning(Bucket=fresh)
    store = S3ObjectStore(client, fresh)
    publish(store, "v1", simple_records(3))
    assert client.get_bucket_versioning(Bucket=fresh)["Status"] == "Enabled"
    assert all(f.get("version_id") for f in read_manifest(store, "pets", 1)["files"])

    suspended = f"suspended-{uuid.uuid4().hex[:8]}"
    minio.ensure_bucket(suspended, versioning=True)
    client.put_bucket_versioning(Bucket=suspended, VersioningConfiguration={"Status": "Suspended"})
    store = S3ObjectStore(client, suspended)
    publish(store, "v1", simple_records(3))
    assert client.get_bucket_versioning(Bucket=suspended)["Status"] == "Suspended"
    assert verify_version(store, "pets", 1) == []

    opted_out = f"opted-out-{uuid.uuid4().hex[:8]}"
    minio.ensure_bucket(opted_out, versioning=False)
    publish(S3ObjectStore(client, opted_out, versioning=False), "v1", simple_records(3))
    assert "Status" not in client.get_bucket_versioning(Bucket=opted_out)
