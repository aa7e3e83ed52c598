"""Incremental publishing: a new version writes only what changed, on both backends."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage.dataset_tools import diff_versions
from storage.dataset_versions import (
    DatasetIntegrityError,
    PublishRequest,
    blob_key,
    label_layers,
    latest_version,
    manifest_key,
    partition_of,
    publish_version,
    read_manifest,
    read_record,
    read_records,
    verify_version,
)
from storage.object_store import LocalObjectStore, ObjectStore
from tests.storage.conftest import StoreEnv
from tests.storage.samples import ONTOLOGY, change_some, simple_record, simple_records

NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def request(publish_id: str, recs: list[dict[str, Any]], **kw: Any) -> PublishRequest:
    fields: dict[str, Any] = {
        "dataset": "pets",
        "publish_id": publish_id,
        "campaigns": ("cmp_x",),
        "created_by": "test",
        "records": recs,
        "class_counts": {},
        "agreement": {},
        "extra": {"campaign_name": "pets", "ontology": ONTOLOGY},
    }
    fields.update(kw)
    return PublishRequest(**fields)


def sizes(store: ObjectStore) -> dict[str, int]:
    """The blobs and manifests in the store (not the small pointer and marker files)."""
    return {
        key: len(store.get(key))
        for key in store.list("datasets/")
        if "/blobs/" in key or key.endswith("manifest.json")
    }


def new_bytes(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(size for key, size in after.items() if key not in before)


def sorted_by_id(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(recs, key=lambda r: r["item_id"])


def test_one_percent_changed_writes_about_one_percent_of_the_bytes(store: ObjectStore) -> None:
    recs = simple_records(3000)
    before = sizes(store)
    first = publish_version(store, request("v1", recs, shard_size=400), now=NOW)
    after_first = sizes(store)
    total = new_bytes(before, after_first)
    assert first.bytes_written == total  # what publish says it wrote is what the store got

    changed, ids = change_some(recs, 0.01, random.Random(5))  # 30 items, scattered
    second = publish_version(store, request("v2", changed, shard_size=400), now=NOW)
    after_second = sizes(store)
    written = new_bytes(after_first, after_second)
    assert second.bytes_written == written

    manifest = read_manifest(store, "pets", 2)
    blobs = written - len(store.get(manifest_key("pets", 2)))
    assert 0.005 < blobs / manifest["stats"]["bytes"] < 0.02, (blobs, manifest["stats"])
    assert written / total < 0.025  # the manifest included
    assert manifest["layout"]["partitions"] == 8
    assert sum(1 for f in manifest["files"] if f["role"] == "labels-delta") == 8

    assert list(read_records(store, "pets", 2)) == sorted_by_id(changed)
    assert [c.item_id for c in diff_versions(store, "pets", 1, 2).changed] == ids
    assert verify_version(store, "pets", 2) == []


class ReadLog:
    """A real store that notes which keys were read (to see what a lookup touched)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def get_version(self, key: str, version_id: str | None) -> bytes:
        self.keys.append(key)
        return self.inner.get_version(key, version_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_one_label_is_read_from_its_own_partition_only(store: ObjectStore) -> None:
    """Tracing a label (``read_record``) must not read the whole version: it reads the layers
    of the one partition the item hashes to, deltas and deletions applied."""
    recs = simple_records(400)
    publish_version(store, request("v1", recs, shard_size=50), now=NOW)
    changed, ids = change_some(recs, 0.05, random.Random(3))
    removed = changed[7]["item_id"]
    changed = [r for r in changed if r["item_id"] != removed]
    publish_version(store, request("v2", changed, shard_size=50), now=NOW)
    manifest = read_manifest(store, "pets", 2)
    layers = label_layers(manifest)
    assert len(layers) == 8 and any(len(v) > 1 for v in layers.values())  # deltas to apply

    whole = {r["item_id"]: r for r in read_records(store, "pets", 2)}
    for item_id in sorted(whole)[::37] + [i for i in ids if i in whole]:
        log = ReadLog(store)
        assert read_record(log, "pets", 2, item_id) == whole[item_id]  # type: ignore[arg-type]
        own = {e["key"] for e in layers[partition_of(item_id, 8)]}
        assert set(log.keys) == own
    assert read_record(store, "pets", 2, removed) is None
    assert read_record(store, "pets", 1, removed) == recs[7]
    assert read_record(store, "pets", 2, "no-such-item") is None


def test_republishing_the_same_records_writes_only_a_manifest(store: ObjectStore) -> None:
    recs = simple_records(200)
    publish_version(store, request("v1", recs, shard_size=50), now=NOW)
    before = sizes(store)
    again = publish_version(store, request("v2", list(reversed(recs)), shard_size=50), now=NOW)
    assert set(sizes(store)) - set(before) == {manifest_key("pets", 2)}
    m1, m2 = read_manifest(store, "pets", 1), read_manifest(store, "pets", 2)
    assert m1["files"] == m2["files"]
    assert m2["stats"]["new_bytes"] == 0
    assert again.bytes_written == len(store.get(manifest_key("pets", 2)))


def test_many_versions_of_random_edits_read_back_exactly(store: ObjectStore) -> None:
    rng = random.Random(11)
    truth = {r["item_id"]: r for r in simple_records(120)}
    next_id = 1000
    layer_counts: list[int] = []
    bases: dict[int, str] = {}
    compactions = 0
    for v in range(1, 16):
        for item_id in rng.sample(sorted(truth), 6):  # change
            truth[item_id] = {**truth[item_id], "confidence": rng.random()}
        for item_id in rng.sample(sorted(truth), 2):  # remove
            del truth[item_id]
        for _ in range(3):  # add
            record = simple_record(next_id)
            truth[record["item_id"]] = record
            next_id += 1
        recs = list(truth.values())
        rng.shuffle(recs)
        result = publish_version(
            store, request(f"v{v}", recs, shard_size=30, max_delta_layers=3), now=NOW
        )
        assert result.version == v
        assert list(read_records(store, "pets", v)) == sorted_by_id(list(truth.values()))
        assert verify_version(store, "pets", v) == []
        manifest = read_manifest(store, "pets", v)
        assert manifest["layout"]["partitions"] == 8  # 121..135 items of about 30 each
        layers = label_layers(manifest)
        assert all(len(ls) <= 4 for ls in layers.values())  # a base and at most 3 deltas
        layer_counts.append(max(len(ls) for ls in layers.values()))
        for partition, ls in layers.items():
            if partition in bases and bases[partition] != ls[0]["sha256"]:
                compactions += 1
            bases[partition] = ls[0]["sha256"]
    # Partitions grew deltas and were written whole again (compacted) along the way.
    assert max(layer_counts) == 4
    assert compactions >= 4


def test_growing_fourfold_repartitions_and_reads_back(store: ObjectStore) -> None:
    recs = simple_records(100)
    publish_version(store, request("v1", recs, shard_size=25), now=NOW)
    bigger = simple_records(900)
    publish_version(store, request("v2", bigger, shard_size=25), now=NOW)
    m1, m2 = read_manifest(store, "pets", 1), read_manifest(store, "pets", 2)
    assert (m1["layout"]["partitions"], m2["layout"]["partitions"]) == (4, 64)
    assert m2["layout"]["base_version"] == 1
    assert not any(f["role"] == "labels-delta" for f in m2["files"])
    assert list(read_records(store, "pets", 2)) == sorted_by_id(bigger)
    assert verify_version(store, "pets", 2) == []


def test_a_new_ontology_rerenders_exports_but_reuses_labels(store: ObjectStore) -> None:
    recs = simple_records(40)
    publish_version(store, request("v1", recs, shard_size=10), now=NOW)
    # Road before car: COCO category ids, YOLO class indices and JSONL class ids all move.
    classes = ONTOLOGY["classes"]
    reordered = {**ONTOLOGY, "classes": [classes[3], *classes[:3], *classes[4:]]}
    publish_version(store, request("v2", recs, shard_size=10, extra={"ontology": reordered}))
    m1, m2 = read_manifest(store, "pets", 1), read_manifest(store, "pets", 2)
    labels = [f for f in m1["files"] if f["role"] == "labels"]
    assert labels == [f for f in m2["files"] if f["role"] == "labels"]

    def fragments(manifest: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
        return [f for f in manifest["files"] if f["role"] == f"export:{fmt}"]

    for fmt in ("coco", "yolo", "voc", "jsonl"):
        assert m1["exports"]["render"][fmt] != m2["exports"]["render"][fmt]
        assert {f["render"] for f in fragments(m2, fmt)} == {m2["exports"]["render"][fmt]}
        old = {f["key"] for f in fragments(m1, fmt)}
        new = {f["key"] for f in fragments(m2, fmt)}
        # Rendered again; VOC's per-image XML does not depend on the class order, so its
        # fragments come out byte for byte the same (and are the same blobs).
        assert (old == new) if fmt == "voc" else not (old & new)
    assert verify_version(store, "pets", 2) == []


def test_racing_incremental_publishers_each_commit_their_own_content(
    store_env: StoreEnv,
) -> None:
    base = simple_records(300)
    publish_version(store_env.make(), request("v1", base, shard_size=50), now=NOW)
    n = 5
    wanted: dict[str, list[dict[str, Any]]] = {}
    for i in range(n):
        recs, _ = change_some(base, 0.02, random.Random(i))
        wanted[f"race-{i}"] = recs
    stores = [store_env.make() for _ in range(n)]
    results: dict[str, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            publish_id = f"race-{i}"
            req = request(publish_id, wanted[publish_id], shard_size=50)
            results[publish_id] = publish_version(stores[i], req, now=NOW).version
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results.values()) == list(range(2, n + 2))
    reader = store_env.make()
    assert latest_version(reader, "pets") == n + 1
    for publish_id, version in results.items():
        # Whatever version each built on, its manifest lists every layer it needs.
        assert list(read_records(reader, "pets", version)) == sorted_by_id(wanted[publish_id])
        assert verify_version(reader, "pets", version) == []


def test_a_version_1_manifest_is_read_verified_and_built_on(store: ObjectStore) -> None:
    """Datasets published in the v1 layout stay readable, and the next publish builds on them."""
    recs = sorted_by_id(simple_records(25))
    files = []
    for start in range(0, 25, 10):
        data = b"".join(
            (json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n").encode()
            for r in recs[start : start + 10]
        )
        digest = hashlib.sha256(data).hexdigest()
        store.create(blob_key("pets", digest), data)
        files.append(
            {
                "role": "labels",
                "key": blob_key("pets", digest),
                "sha256": digest,
                "size": len(data),
                "records": len(recs[start : start + 10]),
            }
        )
    manifest = {
        "format": "quorum.dataset/v1",
        "dataset": "pets",
        "version": 1,
        "parent": None,
        "publish_id": "old",
        "campaigns": ["cmp_x"],
        "created_at": NOW.isoformat(),
        "created_by": "test",
        "item_count": 25,
        "class_counts": {},
        "agreement": {},
        "extra": {"ontology": ONTOLOGY},
        "files": files,
    }
    store.create(manifest_key("pets", 1), json.dumps(manifest).encode())
    store.create("datasets/pets/latest.json", b'{"sequence": 1, "version": 1}')

    assert list(read_records(store, "pets", 1)) == recs
    assert verify_version(store, "pets", 1) == []

    changed, ids = change_some(recs, 0.1, random.Random(3))
    result = publish_version(store, request("new", changed, shard_size=10), now=NOW)
    assert result.version == 2
    assert read_manifest(store, "pets", 2)["layout"]["base_version"] == 1
    assert list(read_records(store, "pets", 2)) == sorted_by_id(changed)
    assert [c.item_id for c in diff_versions(store, "pets", 1, 2).changed] == ids
    assert verify_version(store, "pets", 2) == []


def test_a_damaged_base_is_rewritten_not_reused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    recs = simple_records(60)
    publish_version(store, request("v1", recs, shard_size=20), now=NOW)
    labels = [f for f in read_manifest(store, "pets", 1)["files"] if f["role"] == "labels"]
    victim = labels[0]
    (tmp_path / victim["key"]).write_bytes(b"garbage\n")

    # The damaged partition changes: it is written whole, from the request.
    in_victim = [r for r in recs if partition_of(r["item_id"], 4) == victim["partition"]]
    changed = [
        {**r, "confidence": 0.5} if r["item_id"] == in_victim[0]["item_id"] else r for r in recs
    ]
    publish_version(store, request("v2", changed, shard_size=20), now=NOW)
    assert list(read_records(store, "pets", 2)) == sorted_by_id(changed)
    assert verify_version(store, "pets", 2) == []

    # Every item changed and back again: partitions are written whole, and the victim's
    # partition would be the damaged blob again, so the publish refuses to refer to it.
    everything = [{**r, "confidence": 0.1} for r in recs]
    publish_version(store, request("v3", everything, shard_size=20), now=NOW)
    with pytest.raises(DatasetIntegrityError, match=victim["key"]):
        publish_version(store, request("v4", recs, shard_size=20), now=NOW)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda m: m.update(files=[f for f in m["files"] if f["role"] != "export:voc"]),
            "0 voc export fragments, expected 1",
        ),
        (lambda m: m["layout"]["partition_items"].__setitem__(0, 99), "manifest says 99"),
        (lambda m: m["files"][0].update(records=7), "records and 0 deletions != manifest 7"),
        (lambda m: m["layout"].update(partitions=8), "items of other partitions"),
        (lambda m: m.update(item_count=41), "!= item_count 41"),
        (lambda m: m["files"][0].update(layer=1), "layers are not 0.. from a base"),
        (lambda m: m["files"][0].update(sha256="0" * 64), "sha256"),
    ],
    ids=["fragment-missing", "partition-count", "layer-count", "partitioning", "item-count",
         "layer-order", "hash"],
)  # fmt: skip
def test_verify_checks_the_layout_not_only_the_hashes(
    store: ObjectStore, mutate: Any, problem: str
) -> None:
    publish_version(store, request("v1", simple_records(40), shard_size=10), now=NOW)
    manifest = read_manifest(store, "pets", 1)
    assert verify_version(store, "pets", 1) == []
    mutate(manifest)
    manifest["version"] = 2
    store.create(manifest_key("pets", 2), json.dumps(manifest).encode())
    problems = verify_version(store, "pets", 2)
    assert any(problem in p for p in problems), problems
