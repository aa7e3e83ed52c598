"""The on-disk record spool that lets a large version be published one partition at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import storage.record_spool as record_spool
from storage.dataset_versions import (
    PublishRequest,
    iter_lines,
    publish_version,
    read_manifest,
    read_records,
    verify_version,
)
from storage.object_store import LocalObjectStore, ObjectStore
from storage.record_spool import RecordSpool, partition_of, record_line
from tests.storage.samples import ONTOLOGY, full_record

NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def _records(n: int) -> list[dict[str, Any]]:
    return [{"item_id": f"item-{i:05d}", "label": "cat", "n": i} for i in range(n)]


def test_partitions_hold_each_record_once_in_its_partition(tmp_path: Path) -> None:
    records = _records(300)
    with RecordSpool(tmp_path) as spool:
        for record in records:
            spool.add(record)
        assert len(spool) == 300
        groups = list(spool.partitions(8))
        assert list(spool.records()) == records  # still readable, in the order added
    assert len(groups) == 8
    for partition, group in enumerate(groups):
        assert all(partition_of(item_id, 8) == partition for item_id in group)
    merged = {item_id: line for group in groups for item_id, line in group.items()}
    assert merged == {r["item_id"]: record_line(r) for r in records}
    # The temporary directory is gone once the spool is closed.
    assert list(tmp_path.iterdir()) == []


def test_more_partitions_than_open_files_take_several_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(record_spool, "_OPEN_FILES", 3)
    records = _records(200)
    with RecordSpool(tmp_path) as spool:
        for record in records:
            spool.add(record)
        groups = list(spool.partitions(16))
    assert sum(len(g) for g in groups) == 200
    for partition, group in enumerate(groups):
        assert all(partition_of(item_id, 16) == partition for item_id in group)


def test_a_repeated_item_id_is_named_by_its_later_position(tmp_path: Path) -> None:
    with RecordSpool(tmp_path) as spool:
        for record in [*_records(50), {"item_id": "item-00007", "label": "dog"}, *_records(3)]:
            spool.add(record)
        with pytest.raises(ValueError, match=r"records\[50\]: duplicate item_id 'item-00007'"):
            next(spool.partitions(4))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"label": "cat"}, r"records\[0\]: item_id must be a non-empty string"),
        ({"item_id": 7}, r"records\[0\]: item_id must be a non-empty string"),
        ({"item_id": "a", "x": float("nan")}, r"records\[0\]: not JSON-serializable"),
        ({"item_id": "a", "x": object()}, r"records\[0\]: not JSON-serializable"),
    ],
)
def test_bad_records_are_refused_as_they_are_added(
    tmp_path: Path, record: dict[str, Any], message: str
) -> None:
    with RecordSpool(tmp_path) as spool, pytest.raises(ValueError, match=message):
        spool.add(record)


def test_item_ids_with_tabs_newlines_and_unicode_survive(tmp_path: Path) -> None:
    records = [{"item_id": "a\tb", "v": "x\ny"}, {"item_id": "é\n", "v": "\u2028"}]
    with RecordSpool(tmp_path) as spool:
        for record in records:
            spool.add(record)
        merged = {k: v for group in spool.partitions(2) for k, v in group.items()}
        assert list(spool.records()) == records
    assert merged == {r["item_id"]: record_line(r) for r in records}


def _request(publish_id: str, records: Any, count: int) -> PublishRequest:
    return PublishRequest(
        dataset="big",
        publish_id=publish_id,
        campaigns=("camp",),
        created_by="test",
        records=records,
        class_counts={"car": count},
        agreement={},
        extra={"ontology": ONTOLOGY},
        shard_size=4,
    )


def test_publishing_from_a_spool_gives_the_same_version_as_from_a_list(
    store: ObjectStore, tmp_path: Path
) -> None:
    records = [full_record(f"cmp_x-{i}") for i in range(23)]
    from_list = publish_version(store, _request("from-list", records, 23), now=NOW)

    other = LocalObjectStore(tmp_path / "other")
    with RecordSpool(tmp_path) as spool:
        for record in reversed(records):
            spool.add(record)
        from_spool = publish_version(other, _request("from-list", spool, 23), now=NOW)

    assert from_spool.item_count == from_list.item_count == 23
    a, b = read_manifest(store, "big", 1), read_manifest(other, "big", 1)
    strip = ("version_id",)
    assert [{k: v for k, v in f.items() if k not in strip} for f in a["files"]] == [
        {k: v for k, v in f.items() if k not in strip} for f in b["files"]
    ]
    assert a["layout"] == b["layout"] and a["layout"]["partitions"] == 8
    assert verify_version(other, "big", 1) == []
    assert list(read_records(other, "big", 1)) == list(read_records(store, "big", 1))


def test_iter_lines_reads_every_item_of_a_version_once(store: ObjectStore) -> None:
    records = [full_record(f"cmp_x-{i}") for i in range(30)]
    publish_version(store, _request("v1", records, 30), now=NOW)
    changed = [*records[:20], {**records[20], "confidence": 0.5}]  # 9 removed, 1 changed
    publish_version(store, _request("v2", changed, 21), now=NOW)
    manifest = read_manifest(store, "big", 2)
    assert any(f["role"] == "labels-delta" for f in manifest["files"])

    got = dict(iter_lines(store, manifest))
    assert len(got) == 21
    assert {k: json.loads(v) for k, v in got.items()} == {r["item_id"]: r for r in changed}
