"""Immutable, versioned datasets in an ``ObjectStore``, published incrementally.

Layout of a dataset ``name`` (all under ``datasets/{name}/``)::

    blobs/sha256/{hex[:2]}/{hex}           content-addressed files, written once
    versions/{version:06d}/manifest.json   one per version; creating it IS the commit
    latest.json                            {"version": n, "sequence": s}, moved by compare-and-swap
    deprecations/{version:06d}.json        written once when an operator deprecates a version
    intents/{publish_id}.json              written before a publisher looks for a version number
    publishes/{publish_id}.json            {"publish_id", "version"}, written after the commit
                                           and the pointer move

What a version holds (manifest format ``quorum.dataset/v2``):

* Items are split into ``partitions`` (a power of two) by ``sha256(item_id) mod partitions``.
  The count is chosen from the number of items (about ``shard_size`` items each) and kept from
  the version a publish builds on (its ``base_version``) until the dataset has grown or shrunk
  four-fold, so that an item stays in its partition from one version to the next.
* A partition is a base layer (``role: labels``: its records, one JSON line each, sorted by
  item_id) and up to ``max_delta_layers`` delta layers (``role: labels-delta``: lines
  ``{"item_id", "record"}`` for an added or changed item, ``{"item_id", "deleted": true}`` for a
  removed one), applied in order. A new version reuses each unchanged partition's layers as
  they are, and adds to a changed one a delta holding only what changed, so publishing a version
  with 1% of its items changed writes about 1% of the bytes, wherever those items are. When a
  partition's deltas outgrow ``compact_ratio`` of its base (or their number its limit), the
  publish writes the partition whole as a new base instead, which bounds what a reader has to
  apply.
* Exports follow the label layers: for each export format and label layer, one fragment
  (``role: export:<format>``) holds each of the layer's items rendered in that format (see
  ``storage.exports``), so unchanged exports are reused too; ``download_version`` assembles the
  format's files (a COCO JSON, YOLO label files, ...) from the fragments.
* Every file is listed with its role, key, sha256 and size (and, where the store keeps object
  versions, the version id it was read at), with the item count per partition, class counts,
  an agreement summary, the campaigns, and when and by whom it was created.

Version 1 manifests (``quorum.dataset/v1``: fixed blocks of sorted records, no exports) are
still read, verified and used as a base, never written.

Why it is safe:

* A version is committed by a single write-once ``create`` of its manifest, and the manifest is
  written last, referring only to blobs that already exist: a reader sees a whole version or
  none. Two publishers cannot both create the same manifest, so each number has one winner; the
  loser probes the next number. Numbers are therefore contiguous (1, 2, 3, ...). A manifest
  lists every layer it needs, so it does not matter which version its publisher built on.
* A publish that merges the dataset's content (a campaign's labels with the other campaigns'
  labels) merges the newest committed version (``merge_point``; versions a rollback stepped
  over excepted) and may take only the number after the newest. If another publisher took it
  first, nothing is committed and ``BaseMoved`` tells the caller to merge again, so two
  campaigns publishing into one dataset at once never drop each other's labels.
* ``latest.json`` is only a hint that may lag behind the newest manifest (a publisher can crash
  between its commit and the pointer move). Publishers probe forward from it, and move it
  forward only, by compare-and-swap; ``rollback`` is the one way to move it back.
* ``publish_id`` makes publishing idempotent for a retried activity. The marker under
  ``publishes/`` answers a retry at once. If the previous attempt crashed after its commit but
  before the marker, the retry scans the manifests from the number recorded in its intent file
  (the newest version when the first attempt began): that attempt's version cannot be lower,
  even if other publishers have moved the pointer past it since.
* Nothing is ever deleted; a version can only be marked deprecated. On S3 with bucket
  versioning (turned on by the first publish where the server allows it), a manifest pins the
  object version of each file, so a version reads the bytes it committed even if a key is
  overwritten behind Quorum's back (``verify_version`` reports such an overwrite).

Exactly-once holds for attempts that run one after another (Temporal's retries). Two attempts
with the same ``publish_id`` running *at the same time* can both commit; both then return the
version named by the marker, and the other version is an orphan that nothing points to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.exports import EXPORT_FORMATS, ExportContext, parse_formats, render_item
from storage.exports.common import canonical_json
from storage.object_store import ObjectNotFound, ObjectStore
from storage.record_spool import RecordSpool, partition_of, record_line

__all__ = [
    "MANIFEST_FORMAT",
    "READABLE_FORMATS",
    "BaseMoved",
    "DatasetIntegrityError",
    "DatasetNotFound",
    "Deprecation",
    "PublishRequest",
    "PublishedVersion",
    "RecordSpool",
    "VersionDeprecated",
    "VersionNotFound",
    "blob_key",
    "deprecate_version",
    "deprecation_key",
    "effective_lines",
    "export_context",
    "iter_lines",
    "label_layers",
    "latest_key",
    "latest_version",
    "list_datasets",
    "list_versions",
    "manifest_key",
    "merge_point",
    "partition_of",
    "publish_marker_key",
    "publish_version",
    "read_deprecation",
    "read_manifest",
    "read_manifest_bytes",
    "read_record",
    "read_records",
    "rollback",
    "verified_blob",
    "verify_version",
]

MANIFEST_FORMAT = "quorum.dataset/v2"
_V1 = "quorum.dataset/v1"
READABLE_FORMATS = (_V1, MANIFEST_FORMAT)
LAYOUT_SCHEME = "sha256-mod-partitions+delta-layers"
LABEL_ROLES = ("labels", "labels-delta")
EXPORT_ROLE_PREFIX = "export:"

_DATASET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Publish ids end up in keys (and file names), so they are kept to a safe alphabet.
_PUBLISH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=@+-]{0,199}")
_MANIFEST_KEY_RE = re.compile(r"datasets/([^/]+)/versions/(\d{6,})/manifest\.json")


class DatasetIntegrityError(RuntimeError):
    """A stored file does not match the hash or size its manifest records."""


class _NotFound(ObjectNotFound):
    # KeyError quotes its message in str(); these are read by people.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetNotFound(_NotFound):
    """No version of the dataset was ever committed."""


class VersionNotFound(_NotFound):
    """The dataset has no such version."""


class VersionDeprecated(ValueError):
    """The version is deprecated (rollback refuses it unless told otherwise)."""


@dataclass(frozen=True)
class PublishRequest:
    dataset: str
    publish_id: str
    campaigns: tuple[str, ...]
    created_by: str
    # The whole content of the version: a sequence, or a spool (on disk) for large versions.
    records: Sequence[Mapping[str, Any]] | RecordSpool
    class_counts: Mapping[str, int]
    agreement: Mapping[str, Any]
    # campaign_name, and the ontology (JSON) the exports are rendered with.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # About how many items a partition holds (the partition count is a power of two).
    shard_size: int = 10_000
    exports: tuple[str, ...] = EXPORT_FORMATS
    # When a partition is written whole again instead of growing another delta layer.
    max_delta_layers: int = 8
    compact_ratio: float = 0.25
    # For records merged with an earlier version's content (a campaign's labels with the other
    # campaigns' labels): the number ``merge_point`` gave with the version merged. The new
    # version must have exactly this number; if another publisher took it first, nothing is
    # committed and ``BaseMoved`` is raised, so that the caller merges again instead of
    # dropping what that publisher added. None: the first free number (the records are the
    # whole content, whatever came before).
    version: int | None = None


class BaseMoved(Exception):
    """Another version was committed after the one a merging publish built on (see
    ``PublishRequest.version``): merge again from ``merge_point`` and publish again."""


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
    # What this call wrote (new blobs and the manifest; 0 when ``created`` is False), and the
    # size of everything the version consists of.
    bytes_written: int = 0
    bytes_total: int = 0


@dataclass(frozen=True)
class Deprecation:
    dataset: str
    version: int
    reason: str
    by: str
    at: str
    # False when the version had been deprecated already (this is the earlier marker).
    created: bool = True


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


def deprecation_key(dataset: str, version: int) -> str:
    return f"{_prefix(dataset)}deprecations/{_check_version(version):06d}.json"


def _intent_key(dataset: str, publish_id: str) -> str:
    return f"{_prefix(dataset)}intents/{_check_publish_id(publish_id)}.json"


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _ideal_partitions(count: int, target: int) -> int:
    partitions = 1
    while count > partitions * target:
        partitions *= 2
    return partitions


def _choose_partitions(count: int, target: int, current: int | None) -> int:
    ideal = _ideal_partitions(count, target)
    if current is not None and ideal // 4 <= current <= ideal * 4:
        return current  # keep items where they are: only their changes get written
    return ideal


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_manifest(store: ObjectStore, dataset: str, version: int) -> dict[str, Any]:
    """The manifest of ``version``; raises ``VersionNotFound`` if it was never committed
    (``DatasetNotFound`` if the dataset has no version at all)."""
    manifest: dict[str, Any] = json.loads(read_manifest_bytes(store, dataset, version))
    return manifest


def read_manifest_bytes(store: ObjectStore, dataset: str, version: int) -> bytes:
    """The manifest of ``version`` as stored."""
    try:
        return store.get(manifest_key(dataset, version))
    except ObjectNotFound:
        known = list_versions(store, dataset)
        if not known:
            raise DatasetNotFound(f"no dataset named {dataset!r} in {store.describe()}") from None
        raise VersionNotFound(
            f"dataset {dataset!r} has no version {version} (versions: {', '.join(map(str, known))})"
        ) from None


def _try_read_manifest(store: ObjectStore, dataset: str, version: int) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads(store.get(manifest_key(dataset, version)))
    except ObjectNotFound:
        return None
    return manifest


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


def _newest_committed(store: ObjectStore, dataset: str, start: int) -> int:
    """The newest version number at or after ``start`` (a committed one, or 0), probing the
    manifests forward: numbers are contiguous, the pointer may lag."""
    newest = start
    while store.exists(manifest_key(dataset, newest + 1)):
        newest += 1
    return newest


def merge_point(store: ObjectStore, dataset: str) -> tuple[int | None, int]:
    """Where a publish that merges the dataset's content (keeping other campaigns' labels)
    starts: the version to merge (None for none) and the number the merged version must take
    (``PublishRequest.version``).

    The version to merge is the newest committed one, even if ``latest.json`` lags behind it
    (its publisher crashed before moving the pointer, or is about to move it), because that
    version's labels are part of the dataset. Versions a ``rollback`` stepped back over are the
    exception: they stay out, and the merge starts from the version rolled back to."""
    pointer, _ = _read_pointer(store, dataset)
    current = 0 if pointer is None else int(pointer["version"])
    newest = _newest_committed(store, dataset, current)
    skipped = 0 if pointer is None else int(pointer.get("skip_through", current))
    base = newest if newest > skipped else current
    return (base or None), newest + 1


def verified_blob(store: ObjectStore, entry: Mapping[str, Any]) -> bytes:
    """The bytes of a manifest's file entry, checked against its size and sha256."""
    key = str(entry["key"])
    data = store.get_version(key, entry.get("version_id"))
    if len(data) != entry["size"]:
        raise DatasetIntegrityError(f"{key}: size {len(data)} != manifest size {entry['size']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise DatasetIntegrityError(f"{key}: sha256 {digest} != manifest sha256 {entry['sha256']}")
    return data


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


# One layer's content: item_id -> its record's canonical JSON line, or None (deleted).
Layer = list[tuple[str, bytes | None]]


def _parse_layer(data: bytes, role: str) -> Layer:
    out: Layer = []
    for line in _lines(data):
        parsed = json.loads(line)
        if role == "labels":
            out.append((str(parsed["item_id"]), line))
        elif "record" in parsed:
            out.append((str(parsed["item_id"]), record_line(parsed["record"])))
        else:
            out.append((str(parsed["item_id"]), None))
    return out


def label_layers(manifest: Mapping[str, Any]) -> dict[Any, list[dict[str, Any]]]:
    """The label layers of each partition, in order (a v1 file is a partition of its own)."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for index, entry in enumerate(manifest.get("files", [])):
        if entry.get("role") not in LABEL_ROLES:
            continue
        groups[entry.get("partition", f"v1-{index}")].append(entry)
    for layers in groups.values():
        layers.sort(key=lambda e: int(e.get("layer", 0)))
    return dict(groups)


def _apply(layers: Iterable[Layer]) -> dict[str, bytes]:
    current: dict[str, bytes] = {}
    for layer in layers:
        for item_id, line in layer:
            if line is None:
                current.pop(item_id, None)
            else:
                current[item_id] = line
    return current


def effective_lines(
    store: ObjectStore, manifest: Mapping[str, Any], partitions: Collection[Any] | None = None
) -> dict[str, bytes]:
    """item_id -> record line of a version (of only ``partitions``, if given), checked."""
    out: dict[str, bytes] = {}
    for partition, layers in label_layers(manifest).items():
        if partitions is not None and partition not in partitions:
            continue
        out.update(_apply(_parse_layer(verified_blob(store, e), e["role"]) for e in layers))
    return out


def iter_lines(store: ObjectStore, manifest: Mapping[str, Any]) -> Iterator[tuple[str, bytes]]:
    """(item_id, record line) of a version, checked, one partition in memory at a time.

    Items come partition by partition, sorted within each (``read_records`` sorts them all).
    """
    for layers in label_layers(manifest).values():
        lines = _apply(_parse_layer(verified_blob(store, e), e["role"]) for e in layers)
        for item_id in sorted(lines):
            yield item_id, lines[item_id]


def read_records(store: ObjectStore, dataset: str, version: int) -> Iterator[dict[str, Any]]:
    """The label records of ``version`` in item_id order, checking each file's sha256 first."""
    lines = effective_lines(store, read_manifest(store, dataset, version))
    for item_id in sorted(lines):
        record: dict[str, Any] = json.loads(lines[item_id])
        yield record


def read_record(
    store: ObjectStore, dataset: str, version: int, item_id: str
) -> dict[str, Any] | None:
    """One item's label record in ``version`` (None if the version does not hold it), checked.

    Reads only the partition the item hashes to, so tracing one label costs a partition's
    bytes, not the whole version's (a v1 manifest has no partitions and is read whole)."""
    manifest = read_manifest(store, dataset, version)
    count = (manifest.get("layout") or {}).get("partitions")
    partitions = {partition_of(item_id, int(count))} if count else None
    line = effective_lines(store, manifest, partitions).get(item_id)
    return None if line is None else json.loads(line)


def export_context(
    manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]] = ()
) -> ExportContext:
    """What a version's exports are rendered with: its ontology (else its records' classes)."""
    extra = manifest.get("extra") or {}
    ontology = extra.get("ontology") if isinstance(extra, Mapping) else None
    return ExportContext.build(ontology, str(manifest["dataset"]), records)


def read_deprecation(store: ObjectStore, dataset: str, version: int) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads(store.get(deprecation_key(dataset, version)))
    except ObjectNotFound:
        return None
    return marker


# --------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------


def verify_version(store: ObjectStore, dataset: str, version: int) -> list[str]:
    """Problems with ``version`` (empty when every file's hash and size, and every count, match).

    Checks each file against its sha256 and size, the record counts of each layer and partition,
    that each item sits in its partition, that each label layer has one fragment per export
    format naming the same items, and (on a versioned store) that no file was overwritten since
    the commit. Reads one partition at a time.
    """
    key = manifest_key(dataset, version)
    try:
        raw = store.get(key)
    except ObjectNotFound:
        return [f"{key}: missing"]
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        return [f"{key}: not valid JSON ({err})"]
    problems: list[str] = []
    if manifest.get("format") not in READABLE_FORMATS:
        problems.append(
            f"{key}: format {manifest.get('format')!r} is not one of {READABLE_FORMATS}"
        )
    if manifest.get("dataset") != dataset or manifest.get("version") != version:
        problems.append(
            f"{key}: names {manifest.get('dataset')!r} version {manifest.get('version')!r}"
        )
    layered = manifest.get("format") == MANIFEST_FORMAT
    layout = manifest.get("layout") or {}
    partitions = int(layout.get("partitions") or 1)
    counts = layout.get("partition_items")
    exports = list((manifest.get("exports") or {}).get("formats", []))

    # Every file of a partition (its label layers and their export fragments), together.
    members: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for index, entry in enumerate(manifest.get("files", [])):
        members[entry.get("partition", f"v1-{index}")].append(entry)
    if isinstance(counts, list):
        for partition, count in enumerate(counts):
            if partition not in members and count != 0:
                problems.append(f"{key}: partition {partition} has no files but {count} items")

    total = 0
    for partition, entries in members.items():
        blobs: dict[tuple[str, Any], bytes] = {}
        damaged = False
        for entry in entries:
            ident = (str(entry["key"]), entry.get("version_id"))
            if ident in blobs:
                continue  # the same blob listed twice (identical fragments)
            try:
                blobs[ident] = verified_blob(store, entry)
            except ObjectNotFound:
                problems.append(f"{entry['key']}: missing")
                damaged = True
                continue
            except DatasetIntegrityError as err:
                problems.append(str(err))
                damaged = True
                continue
            problems += _replaced(store, entry)
        if damaged:
            continue
        layers = sorted(
            (e for e in entries if e.get("role") in LABEL_ROLES),
            key=lambda e: int(e.get("layer", 0)),
        )
        parsed_layers = []
        for entry in layers:
            parsed = _parse_layer(
                blobs[(str(entry["key"]), entry.get("version_id"))], entry["role"]
            )
            parsed_layers.append(parsed)
            puts = sum(1 for _, line in parsed if line is not None)
            deletes = len(parsed) - puts
            if puts != entry.get("records") or deletes != entry.get("deletes", 0):
                problems.append(
                    f"{entry['key']}: {puts} records and {deletes} deletions != manifest "
                    f"{entry.get('records')} and {entry.get('deletes', 0)}"
                )
        if layered:
            problems += _check_layout(key, partition, partitions, layers, parsed_layers)
            problems += _check_fragments(exports, entries, layers, parsed_layers, blobs)
        count = len(_apply(parsed_layers))
        if isinstance(partition, int) and isinstance(counts, list):
            expected = counts[partition] if partition < len(counts) else None
            if expected != count:
                problems.append(
                    f"{key}: partition {partition} holds {count} items, manifest says {expected}"
                )
        total += count
    if not problems and total != manifest.get("item_count"):
        problems.append(f"{key}: files hold {total} records != item_count {manifest['item_count']}")
    return problems


def _replaced(store: ObjectStore, entry: Mapping[str, Any]) -> list[str]:
    pinned = entry.get("version_id")
    if pinned is None:
        return []
    try:
        current = store.version_of(str(entry["key"]))
    except ObjectNotFound:
        current = None
    if current == pinned:
        return []
    return [
        f"{entry['key']}: replaced after the commit (current object version {current}, "
        f"committed {pinned}); the version still reads the committed bytes"
    ]


def _check_layout(
    key: str,
    partition: Any,
    partitions: int,
    layers: Sequence[Mapping[str, Any]],
    parsed_layers: Sequence[Layer],
) -> list[str]:
    problems = []
    numbers = [int(e.get("layer", -1)) for e in layers]
    if numbers != list(range(len(layers))) or not layers or layers[0]["role"] != "labels":
        problems.append(f"{key}: partition {partition}: layers are not 0.. from a base")
    misplaced = [
        item_id
        for layer in parsed_layers
        for item_id, _ in layer
        if partition_of(item_id, partitions) != partition
    ]
    if misplaced:
        problems.append(
            f"{key}: partition {partition} holds {len(misplaced)} items of other partitions "
            f"(first {misplaced[0]!r})"
        )
    return problems


def _check_fragments(
    exports: Sequence[str],
    entries: Sequence[Mapping[str, Any]],
    layers: Sequence[Mapping[str, Any]],
    parsed_layers: Sequence[Layer],
    blobs: Mapping[tuple[str, Any], bytes],
) -> list[str]:
    """Each label layer has exactly one fragment per export format, naming the same items."""
    problems = []
    for entry, layer in zip(layers, parsed_layers, strict=True):
        ids = sorted(item_id for item_id, _ in layer)
        for fmt in exports:
            found = [
                e
                for e in entries
                if e.get("role") == f"{EXPORT_ROLE_PREFIX}{fmt}"
                and e.get("labels_sha256") == entry["sha256"]
                and e.get("layer") == entry.get("layer")
            ]
            if len(found) != 1:
                problems.append(f"{entry['key']}: {len(found)} {fmt} export fragments, expected 1")
                continue
            data = blobs[(str(found[0]["key"]), found[0].get("version_id"))]
            rendered = sorted(str(json.loads(line)["item_id"]) for line in _lines(data))
            if rendered != ids:
                problems.append(
                    f"{found[0]['key']}: the {fmt} fragment does not name the items of "
                    f"{entry['key']}"
                )
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


def rollback(
    store: ObjectStore, dataset: str, version: int, *, allow_deprecated: bool = False
) -> int:
    """Point ``latest.json`` at an earlier committed ``version``; returns the new sequence.

    Committed versions stay as they are; the next publish gets a new number after the newest.
    A deprecated version is refused (``VersionDeprecated``) unless ``allow_deprecated``.
    """
    read_manifest(store, dataset, version)  # it must exist
    marker = read_deprecation(store, dataset, version)
    if marker is not None and not allow_deprecated:
        raise VersionDeprecated(
            f"dataset {dataset!r} version {version} is deprecated ({marker.get('reason')}); "
            "roll back to it only if you mean to (allow_deprecated / --force)"
        )
    key = latest_key(dataset)
    while True:
        pointer, etag = _read_pointer(store, dataset)
        sequence = (0 if pointer is None else int(pointer["sequence"])) + 1
        # The versions stepped back over, which a merging publish leaves out (merge_point).
        skip = _newest_committed(store, dataset, version)
        moved = {"version": version, "sequence": sequence, "skip_through": skip}
        if store.compare_and_swap(key, _dumps(moved), etag):
            return sequence


def deprecate_version(
    store: ObjectStore,
    dataset: str,
    version: int,
    reason: str,
    by: str,
    *,
    now: datetime | None = None,
) -> Deprecation:
    """Mark ``version`` deprecated with a write-once marker; the version itself stays.

    Deprecating twice keeps the first marker (and returns it, with ``created`` False). The
    pointer does not move: ``rollback`` if ``latest`` should stop naming the version.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason: say why the version is deprecated")
    if not isinstance(by, str) or not by.strip():
        raise ValueError("by: say who deprecates the version")
    read_manifest(store, dataset, version)  # it must exist
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    marker = {"version": version, "reason": reason.strip(), "by": by.strip(), "at": at}
    key = deprecation_key(dataset, version)
    created = store.create(key, _dumps(marker))
    if not created:
        marker = json.loads(store.get(key))
    return Deprecation(
        dataset=dataset,
        version=version,
        reason=str(marker["reason"]),
        by=str(marker["by"]),
        at=str(marker["at"]),
        created=created,
    )


def _result(
    store: ObjectStore,
    dataset: str,
    manifest: Mapping[str, Any],
    *,
    created: bool,
    bytes_written: int = 0,
) -> PublishedVersion:
    version = int(manifest["version"])
    key = manifest_key(dataset, version)
    parent = manifest["parent"]
    stats = manifest.get("stats") or {}
    return PublishedVersion(
        dataset=dataset,
        version=version,
        parent=None if parent is None else int(parent),
        manifest_key=key,
        manifest_uri=store.uri(key),
        item_count=int(manifest["item_count"]),
        created=created,
        bytes_written=bytes_written if created else 0,
        bytes_total=int(stats.get("bytes", 0)),
    )


def _finish(
    store: ObjectStore,
    dataset: str,
    publish_id: str,
    manifest: Mapping[str, Any],
    *,
    created: bool,
    bytes_written: int = 0,
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
    return _result(store, dataset, manifest, created=created, bytes_written=bytes_written)


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


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")


def _validate(req: PublishRequest) -> None:
    _check_dataset(req.dataset)
    _check_publish_id(req.publish_id)
    _positive_int(req.shard_size, "shard_size")
    _positive_int(req.max_delta_layers, "max_delta_layers")
    if (
        isinstance(req.compact_ratio, bool)
        or not isinstance(req.compact_ratio, int | float)
        or not 0 <= req.compact_ratio <= 10
    ):
        raise ValueError(f"compact_ratio: must be a number in [0, 10], got {req.compact_ratio!r}")
    if not isinstance(req.campaigns, tuple) or not all(isinstance(c, str) for c in req.campaigns):
        raise ValueError("campaigns: must be a tuple of strings")
    if not isinstance(req.created_by, str) or not req.created_by:
        raise ValueError("created_by: must be a non-empty string")
    if req.version is not None:
        _check_version(req.version)
    if not isinstance(req.exports, tuple):
        raise ValueError("exports: must be a tuple of format names")
    if req.exports:
        try:
            parse_formats(req.exports)
        except ValueError as err:
            raise ValueError(f"exports: {err}") from None
    # Fail before writing anything, rather than after the blobs, on metadata JSON cannot hold.
    for name in ("class_counts", "agreement", "extra"):
        try:
            _dumps(dict(getattr(req, name)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: not JSON-serializable ({err})") from None


class _Writer:
    """Writes content-addressed blobs once, counting what it actually wrote."""

    def __init__(self, store: ObjectStore, dataset: str) -> None:
        self.store = store
        self.dataset = dataset
        self.bytes_written = 0
        self.files_written = 0

    def put(self, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        key = blob_key(self.dataset, digest)
        entry: dict[str, Any] = {"key": key, "sha256": digest, "size": len(data)}
        try:
            version_id = self.store.version_of(key)
        except ObjectNotFound:
            created, version_id = self.store.create_versioned(key, data)
            if created:
                self.bytes_written += len(data)
                self.files_written += 1
            else:  # written meanwhile by someone else
                version_id = self.store.version_of(key)
                self._check_existing(entry, version_id)
        else:
            self._check_existing(entry, version_id)
        if version_id is not None:
            entry["version_id"] = version_id
        return entry

    def _check_existing(self, entry: dict[str, Any], version_id: str | None) -> None:
        # A key that already exists should hold these very bytes; if it was damaged, a new
        # version must not refer to it (and write-once means it cannot be repaired here).
        try:
            verified_blob(self.store, {**entry, "version_id": version_id})
        except DatasetIntegrityError as err:
            raise DatasetIntegrityError(
                f"{err}; the blob this publish needs is damaged in the store: restore it "
                "(from a backup, or an earlier object version) and publish again"
            ) from None


def _base_manifest(store: ObjectStore, dataset: str) -> dict[str, Any] | None:
    """The version a publish builds on (the one ``latest`` names), if it can serve as one."""
    version = latest_version(store, dataset)
    if version is None:
        return None
    manifest = _try_read_manifest(store, dataset, version)
    if manifest is None or manifest.get("format") not in READABLE_FORMATS:
        return None
    return manifest


def _layer_blob(role: str, layer: Layer) -> bytes:
    parts: list[bytes] = []
    for item_id, line in layer:
        if role == "labels":
            assert line is not None
            parts.append(line)
        elif line is None:
            parts.append(canonical_json({"deleted": True, "item_id": item_id}).encode())
        else:
            parts.append(
                b'{"item_id":'
                + json.dumps(item_id, ensure_ascii=False).encode()
                + b',"record":'
                + line
                + b"}"
            )
    return b"".join(part + b"\n" for part in parts)


def _fragment_blob(fmt: str, layer: Layer, records: Sequence[Any], ctx: ExportContext) -> bytes:
    """One export fragment: each item of ``layer`` rendered in ``fmt`` (or its deletion).

    ``records`` are the layer's records parsed back from their stored lines (None for a
    deletion), so that the same record always gives the same bytes, whatever types the
    caller's objects had (tuples or lists, ints or floats).
    """
    parts: list[str] = []
    for (item_id, _), record in zip(layer, records, strict=True):
        if record is None:
            parts.append(canonical_json({"deleted": True, "item_id": item_id}))
        else:
            parts.append(canonical_json({"item_id": item_id, **render_item(fmt, record, ctx)}))
    return "".join(part + "\n" for part in parts).encode()


def _partition_layers(
    store: ObjectStore,
    req: PublishRequest,
    new: Mapping[str, bytes],
    old_entries: Sequence[dict[str, Any]],
) -> list[tuple[dict[str, Any] | None, str, Layer]]:
    """One partition's label layers in the new version: each (base entry, or None if new; role;
    content). Unchanged: the base's layers. Changed: one more delta, or the partition whole."""
    whole: Layer = [(item_id, new[item_id]) for item_id in sorted(new)]
    if not old_entries:
        return [(None, "labels", whole)] if whole else []
    try:
        old_contents = [_parse_layer(verified_blob(store, e), e["role"]) for e in old_entries]
    except (ObjectNotFound, DatasetIntegrityError, ValueError, KeyError):
        # A damaged base is not worth failing the publish for: write the partition whole.
        return [(None, "labels", whole)] if whole else []
    old = _apply(old_contents)
    changes: Layer = sorted(
        [(item_id, line) for item_id, line in new.items() if old.get(item_id) != line]
        + [(item_id, None) for item_id in old.keys() - new.keys()],
        key=lambda change: change[0],
    )
    reused: list[tuple[dict[str, Any] | None, str, Layer]] = [
        (e, str(e["role"]), c) for e, c in zip(old_entries, old_contents, strict=True)
    ]
    if not changes:
        return reused
    # Another delta, unless the partition's deltas would outgrow their share of its base
    # (or their number its limit): then the partition is written whole (compacted).
    deltas_size = sum(int(e["size"]) for e in old_entries[1:])
    deltas_size += len(_layer_blob("labels-delta", changes))
    room = len(old_entries) - 1 < req.max_delta_layers
    small = deltas_size <= req.compact_ratio * int(old_entries[0]["size"])
    if room and small:
        return [*reused, (None, "labels-delta", changes)]
    return [(None, "labels", whole)] if whole else []


class _PartitionWriter:
    """Writes each partition's new label layers and every export fragment not already stored."""

    def __init__(
        self,
        writer: _Writer,
        req: PublishRequest,
        base_files: Sequence[Mapping[str, Any]],
        ctx: ExportContext | None,
    ) -> None:
        self.writer = writer
        self.formats = parse_formats(req.exports) if req.exports and ctx is not None else ()
        self.ctx = ctx
        self.fingerprints = {fmt: ctx.fingerprint(fmt) for fmt in self.formats} if ctx else {}
        self.known: dict[tuple[str, str, str], dict[str, Any]] = {}
        for entry in base_files:
            role = str(entry.get("role", ""))
            if role.startswith(EXPORT_ROLE_PREFIX):
                fmt = role[len(EXPORT_ROLE_PREFIX) :]
                key = (fmt, str(entry.get("labels_sha256")), str(entry.get("render")))
                self.known[key] = dict(entry)

    def write(
        self, partition: int, layers: Sequence[tuple[dict[str, Any] | None, str, Layer]]
    ) -> list[dict[str, Any]]:
        """The manifest entries of ``partition``'s files, writing those not stored yet."""
        files: list[dict[str, Any]] = []
        for index, (old_entry, role, content) in enumerate(layers):
            if old_entry is not None:
                label_entry = {
                    k: v for k, v in old_entry.items() if k not in ("partition", "layer", "role")
                }
            else:
                label_entry = self.writer.put(_layer_blob(role, content))
                puts = sum(1 for _, line in content if line is not None)
                label_entry["records"] = puts
                if role == "labels-delta":
                    label_entry["deletes"] = len(content) - puts
            files.append({"role": role, "partition": partition, "layer": index, **label_entry})
            records: list[Any] | None = None
            for fmt in self.formats:
                assert self.ctx is not None
                known = self.known.get((fmt, label_entry["sha256"], self.fingerprints[fmt]))
                if known is not None:
                    fragment = {k: v for k, v in known.items() if k not in ("partition", "layer")}
                else:
                    if records is None:
                        records = [
                            None if line is None else json.loads(line) for _, line in content
                        ]
                    fragment = self.writer.put(_fragment_blob(fmt, content, records, self.ctx))
                    fragment.update(
                        role=f"{EXPORT_ROLE_PREFIX}{fmt}",
                        records=len(content),
                        labels_sha256=label_entry["sha256"],
                        render=self.fingerprints[fmt],
                    )
                files.append({**fragment, "partition": partition, "layer": index})
        return files


def publish_version(
    store: ObjectStore, req: PublishRequest, *, now: datetime | None = None
) -> PublishedVersion:
    """Publish ``req`` as the next version of its dataset, exactly once per ``publish_id``.

    ``req.records`` are the whole content of the new version (a sequence, or a ``RecordSpool``
    for a large version); what is unchanged from the version ``latest`` names is reused rather
    than written again. The version is built one partition at a time, so memory holds about one
    partition's records (``shard_size``), whatever the size of the version.
    """
    _validate(req)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    if isinstance(req.records, RecordSpool):
        return _publish(store, req, req.records, now)
    with RecordSpool.of(req.records) as spool:
        return _publish(store, req, spool, now)


def _publish(
    store: ObjectStore, req: PublishRequest, spool: RecordSpool, now: datetime
) -> PublishedVersion:
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

    # A merge whose number is taken was overtaken: what the other publisher added is not in it.
    if req.version is not None and store.exists(manifest_key(dataset, req.version)):
        raise BaseMoved(f"{dataset}: version {req.version} is taken; merge again")

    # 2. Blobs first, one partition at a time: the manifest may refer only to files that
    #    already exist.
    store.ensure_versioning()
    writer = _Writer(store, dataset)
    base = _base_manifest(store, dataset)
    base_partitions: int | None = None
    base_layers: dict[Any, list[dict[str, Any]]] = {}
    if base is not None and base.get("format") == MANIFEST_FORMAT:
        base_partitions = int(base["layout"]["partitions"])
        base_layers = label_layers(base)
    partitions = _choose_partitions(len(spool), req.shard_size, base_partitions)
    if partitions != base_partitions:
        base_layers = {}  # a different split: every partition is written whole
    ctx = None
    if req.exports:
        ontology = req.extra.get("ontology")
        # Without an ontology the classes come from the records (read back from the spool).
        ctx = ExportContext.build(
            ontology if isinstance(ontology, Mapping) else None, dataset, spool.records()
        )
    partition_writer = _PartitionWriter(writer, req, (base or {}).get("files", []), ctx)
    files: list[dict[str, Any]] = []
    items: list[int] = []
    for partition, new in enumerate(spool.partitions(partitions)):
        layers = _partition_layers(store, req, new, base_layers.get(partition, []))
        files += partition_writer.write(partition, layers)
        items.append(len(new))
    unique = {e["key"]: int(e["size"]) for e in files}

    # 3. Record where this attempt starts looking for a number (the first attempt's record
    #    wins), so that a retry knows how far back its own commit can be.
    pointer = latest_version(store, dataset) or 0
    intent = {"publish_id": publish_id, "from_version": pointer + 1}
    store.create(_intent_key(dataset, publish_id), _dumps(intent))

    # 4. Commit: the first manifest number we can create, probing forward from the pointer
    #    (a merging publish takes only the number it was given).
    version = pointer + 1 if req.version is None else req.version
    formats = list(parse_formats(req.exports)) if req.exports else []
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
            "item_count": len(spool),
            "class_counts": dict(req.class_counts),
            "agreement": dict(req.agreement),
            "extra": dict(req.extra),
            "layout": {
                "scheme": LAYOUT_SCHEME,
                "partitions": partitions,
                "partition_items": items,
                "base_version": None if base is None else int(base["version"]),
            },
            "exports": {
                "formats": formats,
                "render": {fmt: ctx.fingerprint(fmt) for fmt in formats} if ctx else {},
            },
            "stats": {
                "files": len(unique),
                "bytes": sum(unique.values()),
                "new_files": writer.files_written,
                "new_bytes": writer.bytes_written,
            },
            "files": files,
        }
        data = _dumps(manifest)
        if store.create(manifest_key(dataset, version), data):
            break
        existing = _try_read_manifest(store, dataset, version)
        if existing is not None and existing.get("publish_id") == publish_id:
            # Our own write, whose success answer was lost and retried into "already exists".
            manifest = existing
            break
        if req.version is not None:
            raise BaseMoved(
                f"{dataset}: version {version} was published while this publish merged; merge again"
            )
        version += 1

    # 5. Pointer, then marker; a crash before either is repaired by the next attempt.
    return _finish(
        store,
        dataset,
        publish_id,
        manifest,
        created=True,
        bytes_written=writer.bytes_written + len(data),
    )
