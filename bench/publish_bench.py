"""Publishing dataset versions to MinIO: time and bytes, whole and incremental.

One run:
1. starts a fresh MinIO server in a temporary directory (bucket versioning is turned on by the
   first publish, as in production);
2. publishes N synthetic label records (a third tags only, a third boxes, a third polygons and a
   box; two or three crowd responses each, in the label record format of the publish activity)
   as version 1, with every export (COCO, YOLO, VOC, JSON Lines);
3. publishes version 2 with 1% of the items, picked at random, changed (a box moved, a
   confidence changed): the incremental case;
4. publishes version 3 with 1% more items (a new campaign's): the append case;
5. reads version 2 back and verifies it.

Bytes written are counted twice: what ``publish_version`` reports, and the growth of the
bucket itself (the sum of all object versions' sizes under the dataset, so pointer moves and
markers count too).

Writes ``bench/results/publish.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_dir import load_average, machine, results_dir
from infra.devstack import MinioServer, free_port
from storage import (
    PublishRequest,
    S3ObjectStore,
    publish_version,
    read_manifest,
    read_records,
    verify_version,
)

RESULTS = results_dir()
DATASET = "bench"
ONTOLOGY: dict[str, Any] = {
    "classes": [
        {"name": "cat", "geometry": "tag"},
        {"name": "dog", "geometry": "tag"},
        {"name": "car", "geometry": "box"},
        {"name": "person", "geometry": "box"},
        {"name": "road", "geometry": "polygon"},
    ],
    "multi_label": True,
}


def _box(rng: random.Random, label: str) -> dict[str, Any]:
    x, y = rng.randrange(0, 560), rng.randrange(0, 400)
    return {
        "type": "box",
        "label": label,
        "x": x,
        "y": y,
        "w": rng.randrange(8, 640 - x),
        "h": rng.randrange(8, 480 - y),
        "angle": 0,
        "attributes": {},
    }


def _polygon(rng: random.Random) -> dict[str, Any]:
    cx, cy = rng.randrange(60, 580), rng.randrange(60, 420)
    points = [[cx - 50, cy - 40], [cx + 55, cy - 35], [cx + 45, cy + 50], [cx - 40, cy + 45]]
    return {"type": "polygon", "label": "road", "points": points, "attributes": {}}


def synthetic_record(i: int, campaign: str, rng: random.Random) -> dict[str, Any]:
    tag = rng.choice(["cat", "dog"])
    kind = i % 3
    objects: list[dict[str, Any]] = [{"type": "tag", "label": tag, "attributes": {}}]
    if kind == 1:
        objects += [_box(rng, rng.choice(["car", "person"])) for _ in range(rng.randint(1, 3))]
    elif kind == 2:
        objects += [_polygon(rng), _box(rng, "car")]
    responses = []
    for n in range(rng.choice([2, 3])):
        responses.append(
            {
                "response_id": f"rsp_{campaign}_{i}_{n}",
                "annotator_id": f"ann_{rng.randrange(50)}",
                "labels": [tag],
                "objects": objects,
                "submitted_at": f"2025-01-01T00:{n:02d}:00+00:00",
                "late": False,
            }
        )
    confident = round(rng.uniform(0.5, 1.0), 3)
    return {
        "item_id": f"{campaign}-{i}",
        "campaign_id": campaign,
        "image": f"s3://images/{campaign}/{i:06d}.jpg",
        "width": 640,
        "height": 480,
        "labels": [tag],
        "objects": [
            {**o, "confidence": confident, "support": [r["response_id"] for r in responses]}
            for o in objects
        ],
        "confidence": confident,
        "agreement": round(rng.uniform(0.5, 1.0), 3),
        "method": "majority_vote",
        "responses": responses,
        "review_id": None,
        "reviewer_id": None,
        "workflow_id": f"campaign/{campaign}/item/{i}",
        "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "finalized_at": "2025-01-01T01:00:00+00:00",
    }


def _change(record: dict[str, Any]) -> dict[str, Any]:
    objects = [dict(o) for o in record["objects"]]
    for obj in objects:
        if obj["type"] == "box":
            obj["x"] = max(0, obj["x"] - 1)
            break
    return {**record, "objects": objects, "confidence": round(record["confidence"] * 0.99, 4)}


def bucket_bytes(client: Any, bucket: str) -> int:
    """The size of every object version in the bucket (what was ever written)."""
    total = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        total += sum(int(v["Size"]) for v in page.get("Versions", []))
    return total


def _publish(
    store: S3ObjectStore, client: Any, bucket: str, publish_id: str, recs: list[dict[str, Any]],
    shard_size: int,
) -> dict[str, Any]:  # fmt: skip
    before = bucket_bytes(client, bucket)
    request = PublishRequest(
        dataset=DATASET,
        publish_id=publish_id,
        campaigns=tuple(sorted({r["campaign_id"] for r in recs})),
        created_by="bench",
        records=recs,
        class_counts={},
        agreement={},
        extra={"campaign_name": "bench", "ontology": ONTOLOGY},
        shard_size=shard_size,
    )
    started = time.perf_counter()
    result = publish_version(store, request)
    seconds = time.perf_counter() - started
    bucket_written = bucket_bytes(client, bucket) - before
    manifest = read_manifest(store, DATASET, result.version)
    stats = manifest["stats"]
    return {
        "version": result.version,
        "items": result.item_count,
        "seconds": round(seconds, 3),
        "items_per_second": round(result.item_count / seconds, 1),
        "bytes_written": result.bytes_written,
        "bytes_written_bucket": bucket_written,
        "files_written": stats["new_files"],
        "version_bytes": stats["bytes"],
        "version_files": stats["files"],
        "written_fraction_of_version": round(result.bytes_written / stats["bytes"], 5),
        "partitions": manifest["layout"]["partitions"],
        "label_bytes": sum(
            f["size"] for f in manifest["files"] if f["role"] in ("labels", "labels-delta")
        ),
        "export_bytes": sum(
            f["size"] for f in manifest["files"] if f["role"].startswith("export:")
        ),
    }


def run_publish_bench(
    items: int, *, changed: float = 0.01, shard_size: int = 10_000, seed: int = 7
) -> dict[str, Any]:
    load_at_start = load_average()
    rng = random.Random(seed)
    records = [synthetic_record(i, "cmp_a", rng) for i in range(items)]
    label_json_bytes = sum(len(json.dumps(r)) for r in records)
    with tempfile.TemporaryDirectory(prefix="quorum-publish-bench-") as tmp:
        server = MinioServer(Path(tmp), port=free_port())
        with server:
            bucket = "bench"
            server.ensure_bucket(bucket, versioning=False)
            client = server.boto3_client()
            store = S3ObjectStore(client, bucket)

            first = _publish(store, client, bucket, "v1", records, shard_size)

            picked = rng.sample(range(items), max(1, round(items * changed)))
            second_records = list(records)
            for i in picked:
                second_records[i] = _change(records[i])
            second = _publish(store, client, bucket, "v2", second_records, shard_size)
            second["items_changed"] = len(picked)

            appended = [
                synthetic_record(i, "cmp_b", rng) for i in range(max(1, round(items * changed)))
            ]
            third = _publish(store, client, bucket, "v3", second_records + appended, shard_size)
            third["items_added"] = len(appended)

            started = time.perf_counter()
            count = sum(1 for _ in read_records(store, DATASET, 2))
            read_seconds = time.perf_counter() - started
            started = time.perf_counter()
            problems = verify_version(store, DATASET, 2)
            verify_seconds = time.perf_counter() - started
    if count != items or problems:
        raise RuntimeError(f"read back {count} of {items} items; verify: {problems[:5]}")
    return {
        "benchmark": "publish",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine("boto3", load_at_start=load_at_start),
        "config": {
            "items": items,
            "changed_fraction": changed,
            "shard_size": shard_size,
            "store": "MinIO (local, single drive), bucket versioning on",
            "exports": ["coco", "yolo", "voc", "jsonl"],
            "record_json_bytes_mean": round(label_json_bytes / items),
        },
        "results": {
            "full": first,
            "incremental_1pct_changed": second,
            "append_1pct_added": third,
            "incremental_bytes_vs_full": round(second["bytes_written"] / first["bytes_written"], 5),
            "read_version_2_seconds": round(read_seconds, 3),
            "verify_version_2_seconds": round(verify_seconds, 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "publish.json")
    args = parser.parse_args(argv)
    out = run_publish_bench(args.items, changed=args.changed, shard_size=args.shard_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
