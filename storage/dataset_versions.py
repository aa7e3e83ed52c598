"""Immutable, versioned datasets in an ``ObjectStore``.

Layout of a dataset ``name`` (all under ``datasets/{name}/``)::

    blobs/sha256/{hex[:2]}/{hex}           content-addressed shards, written once
    versions/{version:06d}/manifest.json   one per version; creating it IS the commit
    latest.json                            {"version": n, "sequence": s}, moved by compare-and-swap
    intents/{publish_id}.json              written before a publisher looks for a version number
    publishes/{publish_id}.json            {"publish_id", "version"}, written after the commit
                                           and the pointer move

Why it is safe:

* A version is committed by a single write-once ``create`` of its manifest, and the manifest is
  written last, referring only to blobs that already exist: a reader sees a whole version or
  none. Two publishers cannot both create the same manifest, so each number has one winner; the
  loser probes the next number. Numbers are therefore contiguous (1, 2, 3, ...).
* ``latest.json`` is only a hint that may lag behind the newest manifest (a publisher can crash
  between its commit and the pointer move). Publishers probe forward from it, and move it
  forward only, by compare-and-swap; ``rollback`` is the one way to move it back.
* ``publish_id`` makes publishing idempotent for a retried activity. The marker under
  ``publishes/`` answers a retry at once. If the previous attempt crashed after its commit but
  before the marker, the retry scans the manifests from the number recorded in its intent file
  (the newest version when the first attempt began): that attempt's version cannot be lower,
  even if other publishers have moved the pointer past it since.

Exactly-once holds for attempts that run one after another (Temporal's retries). Two attempts
with the same ``publish_id`` running *at the same time* can both commit; both then return the
version named by the marker, and the other version is an orphan that nothing points to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.object_store import ObjectNotFound, ObjectStore

__all__ = [
    "MANIFEST_FORMAT",
    "DatasetIntegrityError",
    "PublishRequest",
    "PublishedVersion",
    "blob_key",
    "latest_key",
    "latest_version",
    "list_datasets",
    "list_versions",
    "manifest_key",
    "publish_marker_key",
    "publish_version",
    "read_manifest",
    "read_records",
    "rollback",
    "verify_version",
]

MANIFEST_FORMAT = "quorum.dataset/v1"

_DATASET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Publish ids end up in keys (and file names), so they are kept to a safe alphabet.
_PUBLISH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=@+-]{0,199}")
_MANIFEST_KEY_RE = re.compile(r"datasets/([^/]+)/versions/(\d{6,})/manifest\.json")


class DatasetIntegrityError(RuntimeError):
    """A stored file does not match the hash or size its manifest records."""


@dataclass(frozen=True)
class PublishRequest:
    dataset: str
    publish_id: str
    campaigns: tuple[str, ...]
    created_by: str
    records: Sequence[Mapping[str, Any]]
    class_counts: Mapping[str, int]
    agreement: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)
    shard_size: int = 10_000


@dataclass(frozen=True)
class PublishedVersion:
    dataset: str
    version: int
    parent: int | None
    manifest_key: str
    manifest_uri: str
    item_count: int
    # False when an earlier publish with the same publish_id was returned.
    created: bool


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def _check_dataset(dataset: str) -> str:
    if not isinstance(dataset, str) or not _DATASET_RE.fullmatch(dataset):
        raise ValueError(
            f"dataset: invalid name {dataset!r} (expected [a-z0-9][a-z0-9._-]{{0,62}})"
        )
    return dataset


def _check_publish_id(publish_id: str) -> str:
    if not isinstance(publish_id, str) or not _PUBLISH_ID_RE.fullmatch(publish_id):
        raise ValueError(
            f"publish_id: invalid {publish_id!r} (expected [A-Za-z0-9][A-Za-z0-9._:=@+-]{{0,199}})"
        )
    return publish_id


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: must be a positive integer, got {version!r}")
    return version


def _prefix(dataset: str) -> str:
    return f"datasets/{_check_dataset(dataset)}/"


def blob_key(dataset: str, sha256_hex: str) -> str:
    return f"{_prefix(dataset)}blobs/sha256/{sha256_hex[:2]}/{sha256_hex}"


def manifest_key(dataset: str, version: int) -> str:
    return f"{_prefix(dataset)}versions/{_check_version(version):06d}/manifest.json"


def latest_key(dataset: str) -> str:
    return f"{_prefix(dataset)}latest.json"


def publish_marker_key(dataset: str, publish_id: str) -> str:
    return f"{_prefix(dataset)}publishes/{_check_publish_id(publish_id)}.json"


def _intent_key(dataset: str, publish_id: str) -> str:
    return f"{_prefix(dataset)}intents/{_check_publish_id(publish_id)}.json"


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_manifest(store: ObjectStore, dataset: str, version: int) -> dict[str, Any]:
    """The manifest of ``version``; raises ``ObjectNotFound`` if it was never committed."""
    manifest: dict[str, Any] = json.loads(store.get(manifest_key(dataset, version)))
    return manifest


def _try_read_manifest(store: ObjectStore, dataset: str, version: int) -> dict[str, Any] | None:
    try:
        return read_manifest(store, dataset, version)
    except ObjectNotFound:
        return None


def list_versions(store: ObjectStore, dataset: str) -> list[int]:
    """The committed versions of ``dataset``, ascending."""
    versions = []
    for key in store.list(f"{_prefix(dataset)}versions/"):
        match = _MANIFEST_KEY_RE.fullmatch(key)
        if match and match.group(1) == dataset:
            versions.append(int(match.group(2)))
    return sorted(versions)


def list_datasets(store: ObjectStore) -> list[str]:
    """The datasets that have at least one committed version, sorted."""
    names = set()
    for key in store.list("datasets/"):
        match = _MANIFEST_KEY_RE.fullmatch(key)
        if match:
            names.add(match.group(1))
    return sorted(names)


def _read_pointer(store: ObjectStore, dataset: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data, etag = store.get_with_etag(latest_key(dataset))
    except ObjectNotFound:
        return None, None
    pointer: dict[str, Any] = json.loads(data)
    return pointer, etag


def latest_version(store: ObjectStore, dataset: str) -> int | None:
    """The version ``latest.json`` points to, or None before the first pointer move.

    The pointer may lag behind a version whose publisher crashed before moving it; readers see
    the previous version until the next publish (or a retry of the crashed one) catches it up.
    """
    pointer, _ = _read_pointer(store, dataset)
    return None if pointer is None else int(pointer["version"])


def _verified_blob(store: ObjectStore, entry: Mapping[str, Any]) -> bytes:
    key = str(entry["key"])
    data = store.get(key)
    if len(data) != entry["size"]:
        raise DatasetIntegrityError(f"{key}: size {len(data)} != manifest size {entry['size']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise DatasetIntegrityError(f"{key}: sha256 {digest} != manifest sha256 {entry['sha256']}")
    return data


def read_records(store: ObjectStore, dataset: str, version: int) -> Iterator[dict[str, Any]]:
    """The label records of ``version`` in item_id order, checking each shard's sha256 first."""
    manifest = read_manifest(store, dataset, version)
    for entry in manifest["files"]:
        if entry["role"] != "labels":
            continue
        data = _verified_blob(store, entry)
        for line in data.decode().splitlines():
            if line:
                yield json.loads(line)


def verify_version(store: ObjectStore, dataset: str, version: int) -> list[str]:
    """Problems with ``version`` (empty when every file's hash, size and record count match)."""
    key = manifest_key(dataset, version)
    try:
        manifest = read_manifest(store, dataset, version)
    except ObjectNotFound:
        return [f"{key}: missing"]
    except ValueError as err:
        return [f"{key}: not valid JSON ({err})"]
    problems = []
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(f"{key}: format {manifest.get('format')!r} != {MANIFEST_FORMAT!r}")
    if manifest.get("dataset") != dataset or manifest.get("version") != version:
        problems.append(
            f"{key}: names {manifest.get('dataset')!r} version {manifest.get('version')!r}"
        )
    files = manifest.get("files", [])
    for entry in files:
        try:
            data = _verified_blob(store, entry)
        except ObjectNotFound:
            problems.append(f"{entry['key']}: missing")
            continue
        except DatasetIntegrityError as err:
            problems.append(str(err))
            continue
        if entry.get("role") == "labels":
            lines = sum(1 for line in data.decode().splitlines() if line)
            if lines != entry.get("records"):
                problems.append(f"{entry['key']}: {lines} records != manifest {entry['records']}")
    total = sum(int(e.get("records", 0)) for e in files if e.get("role") == "labels")
    if total != manifest.get("item_count"):
        problems.append(f"{key}: files hold {total} records != item_count {manifest['item_count']}")
    return problems


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------


def _move_pointer_forward(store: ObjectStore, dataset: str, version: int) -> None:
    key = latest_key(dataset)
    while True:
        pointer, etag = _read_pointer(store, dataset)
        if pointer is not None and int(pointer["version"]) >= version:
            return
        sequence = 0 if pointer is None else int(pointer["sequence"])
        moved = {"version": version, "sequence": sequence + 1}
        if store.compare_and_swap(key, _dumps(moved), etag):
            return


def rollback(store: ObjectStore, dataset: str, version: int) -> int:
    """Point ``latest.json`` at an earlier committed ``version``; returns the new sequence.

    Committed versions stay as they are; the next publish gets a new number after the newest.
    """
    read_manifest(store, dataset, version)  # it must exist
    key = latest_key(dataset)
    while True:
        pointer, etag = _read_pointer(store, dataset)
        sequence = (0 if pointer is None else int(pointer["sequence"])) + 1
        if store.compare_and_swap(key, _dumps({"version": version, "sequence": sequence}), etag):
            return sequence


def _result(
    store: ObjectStore, dataset: str, manifest: Mapping[str, Any], *, created: bool
) -> PublishedVersion:
    version = int(manifest["version"])
    key = manifest_key(dataset, version)
    parent = manifest["parent"]
    return PublishedVersion(
        dataset=dataset,
        version=version,
        parent=None if parent is None else int(parent),
        manifest_key=key,
        manifest_uri=store.uri(key),
        item_count=int(manifest["item_count"]),
        created=created,
    )


def _finish(
    store: ObjectStore, dataset: str, publish_id: str, manifest: Mapping[str, Any], *, created: bool
) -> PublishedVersion:
    """Move the pointer, then write the marker, for a committed ``manifest``.

    In this order a marker implies the pointer has been moved at least once, so a retry that finds
    the marker leaves the pointer alone (and cannot undo a ``rollback`` made since).
    """
    version = int(manifest["version"])
    _move_pointer_forward(store, dataset, version)
    marker = {"publish_id": publish_id, "version": version}
    if not store.create(publish_marker_key(dataset, publish_id), _dumps(marker)):
        # Already there: a concurrent attempt with the same publish_id committed too. Everyone
        # answers with the marker's version, so callers agree on one.
        winner = json.loads(store.get(publish_marker_key(dataset, publish_id)))
        if int(winner["version"]) != version:
            manifest = read_manifest(store, dataset, int(winner["version"]))
            created = False
    return _result(store, dataset, manifest, created=created)


def _find_committed(store: ObjectStore, dataset: str, publish_id: str) -> dict[str, Any] | None:
    """The manifest an earlier attempt committed for ``publish_id``, if any."""
    try:
        intent = json.loads(store.get(_intent_key(dataset, publish_id)))
    except ObjectNotFound:
        return None  # no earlier attempt got as far as choosing a version number
    version = max(1, int(intent["from_version"]))
    while (manifest := _try_read_manifest(store, dataset, version)) is not None:
        if manifest.get("publish_id") == publish_id:
            return manifest
        version += 1
    return None


def _serialize_shards(req: PublishRequest) -> list[tuple[bytes, int]]:
    by_id: dict[str, bytes] = {}
    for index, record in enumerate(req.records):
        item_id = record.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"records[{index}]: item_id must be a non-empty string")
        if item_id in by_id:
            raise ValueError(f"records[{index}]: duplicate item_id {item_id!r}")
        line = json.dumps(
            dict(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        by_id[item_id] = (line + "\n").encode()
    lines = [by_id[item_id] for item_id in sorted(by_id)]
    return [
        (
            b"".join(lines[start : start + req.shard_size]),
            len(lines[start : start + req.shard_size]),
        )
        for start in range(0, len(lines), req.shard_size)
    ]


def _validate(req: PublishRequest) -> None:
    _check_dataset(req.dataset)
    _check_publish_id(req.publish_id)
    if (
        isinstance(req.shard_size, bool)
        or not isinstance(req.shard_size, int)
        or req.shard_size < 1
    ):
        raise ValueError(f"shard_size: must be a positive integer, got {req.shard_size!r}")
    if not isinstance(req.campaigns, tuple) or not all(isinstance(c, str) for c in req.campaigns):
        raise ValueError("campaigns: must be a tuple of strings")
    if not isinstance(req.created_by, str) or not req.created_by:
        raise ValueError("created_by: must be a non-empty string")
    # Fail before writing anything, rather than after the blobs, on metadata JSON cannot hold.
    for name in ("class_counts", "agreement", "extra"):
        try:
            _dumps(dict(getattr(req, name)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: not JSON-serializable ({err})") from None


def publish_version(
    store: ObjectStore, req: PublishRequest, *, now: datetime | None = None
) -> PublishedVersion:
    """Publish ``req`` as the next version of its dataset, exactly once per ``publish_id``."""
    _validate(req)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    dataset, publish_id = req.dataset, req.publish_id

    # 1. Published before? The marker answers at once; the manifest scan covers a crash between
    #    an earlier attempt's commit and its marker.
    try:
        marker = json.loads(store.get(publish_marker_key(dataset, publish_id)))
    except ObjectNotFound:
        earlier = _find_committed(store, dataset, publish_id)
        if earlier is not None:
            return _finish(store, dataset, publish_id, earlier, created=False)
    else:
        found = read_manifest(store, dataset, int(marker["version"]))
        return _result(store, dataset, found, created=False)

    # 2. Blobs first: the manifest may refer only to files that already exist.
    files: list[dict[str, Any]] = []
    item_count = 0
    for data, count in _serialize_shards(req):
        digest = hashlib.sha256(data).hexdigest()
        key = blob_key(dataset, digest)
        if not store.exists(key):
            store.create(key, data)  # False: written meanwhile by someone else, same content
        files.append(
            {"role": "labels", "key": key, "sha256": digest, "size": len(data), "records": count}
        )
        item_count += count

    # 3. Record where this attempt starts looking for a number (the first attempt's record
    #    wins), so that a retry knows how far back its own commit can be.
    pointer = latest_version(store, dataset) or 0
    intent = {"publish_id": publish_id, "from_version": pointer + 1}
    store.create(_intent_key(dataset, publish_id), _dumps(intent))

    # 4. Commit: the first manifest number we can create, probing forward from the pointer.
    version = pointer + 1
    while True:
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "dataset": dataset,
            "version": version,
            "parent": version - 1 if version > 1 else None,
            "publish_id": publish_id,
            "campaigns": list(req.campaigns),
            "created_at": now.astimezone(UTC).isoformat(),
            "created_by": req.created_by,
            "item_count": item_count,
            "class_counts": dict(req.class_counts),
            "agreement": dict(req.agreement),
            "extra": dict(req.extra),
            "files": files,
        }
        if store.create(manifest_key(dataset, version), _dumps(manifest)):
            break
        existing = _try_read_manifest(store, dataset, version)
        if existing is not None and existing.get("publish_id") == publish_id:
            # Our own write, whose success answer was lost and retried into "already exists".
            manifest = existing
            break
        version += 1

    # 5. Pointer, then marker; a crash before either is repaired by the next attempt.
    return _finish(store, dataset, publish_id, manifest, created=True)
