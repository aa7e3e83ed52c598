"""What an operator does with published versions: list and show them, diff two, download one.

All of it reads; nothing here writes to the store (``deprecate_version`` and ``rollback`` live
with the publishing code in ``storage.dataset_versions``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.dataset_versions import (
    EXPORT_ROLE_PREFIX,
    DatasetNotFound,
    effective_lines,
    export_context,
    label_layers,
    latest_version,
    list_datasets,
    list_versions,
    read_deprecation,
    read_manifest,
    read_manifest_bytes,
    verified_blob,
)
from storage.exports import (
    EXPORT_FORMATS,
    ExportContext,
    Rendered,
    assemble,
    parse_formats,
    render_item,
)
from storage.exports.common import canonical_json
from storage.object_store import ObjectStore

__all__ = [
    "DatasetSummary",
    "DownloadResult",
    "FieldChange",
    "ItemChange",
    "VersionDiff",
    "VersionSummary",
    "describe_datasets",
    "describe_versions",
    "diff_versions",
    "download_version",
    "show_version",
]


# --------------------------------------------------------------------------------------------
# Listing and showing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionSummary:
    version: int
    parent: int | None
    created_at: str
    created_by: str
    campaigns: list[str]
    item_count: int
    latest: bool
    deprecated: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "campaigns": self.campaigns,
            "item_count": self.item_count,
            "latest": self.latest,
            "deprecated": self.deprecated,
        }


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    versions: list[int]
    latest: int | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "versions": self.versions, "latest": self.latest}


def describe_datasets(store: ObjectStore) -> list[DatasetSummary]:
    return [
        DatasetSummary(name, list_versions(store, name), latest_version(store, name))
        for name in list_datasets(store)
    ]


def _require_dataset(store: ObjectStore, dataset: str) -> list[int]:
    versions = list_versions(store, dataset)
    if not versions:
        known = list_datasets(store)
        raise DatasetNotFound(
            f"no dataset named {dataset!r} in {store.describe()} (datasets: "
            f"{', '.join(known) if known else 'none yet'})"
        )
    return versions


def describe_versions(store: ObjectStore, dataset: str) -> list[VersionSummary]:
    """Every committed version of ``dataset``, oldest first, with deprecation and latest."""
    versions = _require_dataset(store, dataset)
    latest = latest_version(store, dataset)
    out = []
    for version in versions:
        manifest = read_manifest(store, dataset, version)
        out.append(
            VersionSummary(
                version=version,
                parent=manifest.get("parent"),
                created_at=str(manifest.get("created_at", "")),
                created_by=str(manifest.get("created_by", "")),
                campaigns=list(manifest.get("campaigns", [])),
                item_count=int(manifest.get("item_count", 0)),
                latest=version == latest,
                deprecated=read_deprecation(store, dataset, version),
            )
        )
    return out


def show_version(store: ObjectStore, dataset: str, version: int) -> dict[str, Any]:
    """The manifest of ``version``, with ``deprecated`` (the marker or None) and ``latest``."""
    manifest = read_manifest(store, dataset, version)
    return {
        **manifest,
        "deprecated": read_deprecation(store, dataset, version),
        "latest": latest_version(store, dataset) == version,
    }


# --------------------------------------------------------------------------------------------
# Diff
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """A changed field of a record, each side summarized (objects by class, responses by
    annotator, long values by size and digest)."""

    before: Any
    after: Any


@dataclass(frozen=True)
class ItemChange:
    item_id: str
    fields: dict[str, FieldChange]

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "fields": {
                name: {"before": c.before, "after": c.after} for name, c in self.fields.items()
            },
        }


@dataclass(frozen=True)
class VersionDiff:
    dataset: str
    from_version: int
    to_version: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[ItemChange] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def field_counts(self) -> dict[str, int]:
        """How many changed items changed each field."""
        counts: Counter[str] = Counter(name for c in self.changed for name in c.fields)
        return dict(sorted(counts.items()))

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        """As JSON; with ``limit``, at most that many ids (and changes) per list."""

        def cut(values: Sequence[Any]) -> list[Any]:
            return list(values if limit is None else values[:limit])

        return {
            "dataset": self.dataset,
            "from": self.from_version,
            "to": self.to_version,
            "counts": {
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
            },
            "fields_changed": self.field_counts(),
            "added": cut(self.added),
            "removed": cut(self.removed),
            "changed": [c.to_json() for c in cut(self.changed)],
            "truncated": limit is not None
            and max(len(self.added), len(self.removed), len(self.changed)) > limit,
        }


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:12]


def _summary(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if name == "objects" and isinstance(value, list):
        by_class: Counter[str] = Counter(
            f"{o.get('type', '?')}:{o.get('label', '?')}" if isinstance(o, Mapping) else "?"
            for o in value
        )
        return {
            "count": len(value),
            "by_class": dict(sorted(by_class.items())),
            "digest": _digest(value),
        }
    if name == "responses" and isinstance(value, list):
        return {
            "count": len(value),
            "annotators": sorted(
                {str(r.get("annotator_id")) for r in value if isinstance(r, Mapping)}
            ),
            "digest": _digest(value),
        }
    if (
        isinstance(value, list)
        and len(value) <= 20
        and all(v is None or isinstance(v, str | int | float | bool) for v in value)
    ):
        return value
    return {"size": len(canonical_json(value)), "digest": _digest(value)}


def _item_change(item_id: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> ItemChange:
    fields: dict[str, FieldChange] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if canonical_json(old) != canonical_json(new):
            fields[name] = FieldChange(_summary(name, old), _summary(name, new))
    return ItemChange(item_id, fields)


def _same_partitions(a: Mapping[str, Any], b: Mapping[str, Any]) -> set[Any]:
    """Partitions whose label layers are the very same files in both versions."""
    layout_a, layout_b = a.get("layout") or {}, b.get("layout") or {}
    if not layout_a or layout_a.get("partitions") != layout_b.get("partitions"):
        return set()
    layers_a, layers_b = label_layers(a), label_layers(b)
    return {
        p
        for p, layers in layers_a.items()
        if [e["sha256"] for e in layers] == [e["sha256"] for e in layers_b.get(p, [])]
    }


def diff_versions(store: ObjectStore, dataset: str, a: int, b: int) -> VersionDiff:
    """Items added, removed and changed from version ``a`` to version ``b``.

    Partitions whose files the two versions share are known to be equal and not read.
    """
    manifest_a = read_manifest(store, dataset, a)
    manifest_b = read_manifest(store, dataset, b)
    same = _same_partitions(manifest_a, manifest_b)
    every_a = set(label_layers(manifest_a)) - same
    every_b = set(label_layers(manifest_b)) - same
    lines_a = effective_lines(store, manifest_a, every_a)
    lines_b = effective_lines(store, manifest_b, every_b)
    added = sorted(lines_b.keys() - lines_a.keys())
    removed = sorted(lines_a.keys() - lines_b.keys())
    changed = [
        _item_change(item_id, json.loads(lines_a[item_id]), json.loads(lines_b[item_id]))
        for item_id in sorted(lines_a.keys() & lines_b.keys())
        if lines_a[item_id] != lines_b[item_id]
    ]
    return VersionDiff(dataset, a, b, added, removed, changed)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadResult:
    directory: Path
    files: list[str]
    # per format: the export's metadata (counts, skipped records, notes) and where it came from
    exports: dict[str, dict[str, Any]]


def _fragments(manifest: Mapping[str, Any], fmt: str) -> dict[Any, list[dict[str, Any]]]:
    role = f"{EXPORT_ROLE_PREFIX}{fmt}"
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for entry in manifest.get("files", []):
        if entry.get("role") == role:
            groups[entry.get("partition")].append(entry)
    for layers in groups.values():
        layers.sort(key=lambda e: int(e.get("layer", 0)))
    return dict(groups)


def _stored_renders(
    store: ObjectStore, manifest: Mapping[str, Any], fmt: str, ctx: ExportContext
) -> dict[str, Rendered] | None:
    """item_id -> rendering, from the version's stored fragments (None if it has none, or
    they were rendered by code that renders differently from this one)."""
    exports = manifest.get("exports") or {}
    if fmt not in exports.get("formats", []):
        return None
    if (exports.get("render") or {}).get(fmt) != ctx.fingerprint(fmt):
        return None
    labels = label_layers(manifest)
    fragments = _fragments(manifest, fmt)
    current: dict[str, Rendered] = {}
    for partition, layers in labels.items():
        found = fragments.get(partition, [])
        if [f.get("labels_sha256") for f in found] != [e["sha256"] for e in layers]:
            return None  # not the fragments of these layers: render afresh instead
        for entry in found:
            for line in verified_blob(store, entry).split(b"\n"):
                if not line:
                    continue
                parsed = json.loads(line)
                item_id = str(parsed.pop("item_id"))
                if parsed.get("deleted"):
                    current.pop(item_id, None)
                else:
                    current[item_id] = parsed
    return current


def _safe_relative(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refusing to write {path!r} outside the download directory")
    return path


def download_version(
    store: ObjectStore,
    dataset: str,
    version: int,
    directory: Path,
    formats: Sequence[str] = EXPORT_FORMATS,
    *,
    labels: bool = True,
) -> DownloadResult:
    """Write ``version`` to ``directory`` (which must be new or empty), checking every hash.

    Writes ``manifest.json`` (as stored), ``labels.jsonl`` (the records, in item_id order, one
    JSON line each), one directory per export format (assembled from the version's stored
    fragments; rendered from the records for a version published without that format), and
    ``exports.json`` (each export's metadata: counts, skipped records and why, notes). The files
    appear together: they are written to a temporary directory beside ``directory`` first.
    """
    formats = parse_formats(formats) if formats else ()
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} exists and is not an empty directory; choose another")
    raw_manifest = read_manifest_bytes(store, dataset, version)
    manifest = json.loads(raw_manifest)
    lines = effective_lines(store, manifest)
    info = {"dataset": dataset, "version": version, "created_at": manifest.get("created_at")}
    extra = manifest.get("extra") or {}
    parsed: list[dict[str, Any]] = []

    def records() -> list[dict[str, Any]]:
        if not parsed and lines:
            parsed.extend(json.loads(lines[i]) for i in sorted(lines))
        return parsed

    files: list[str] = []
    summary: dict[str, dict[str, Any]] = {}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quorum-download-", dir=directory.parent))

    def write(path: str, data: bytes) -> None:
        target = staging.joinpath(*_safe_relative(path).split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(path)

    try:
        write("manifest.json", raw_manifest)
        if labels:
            write("labels.jsonl", b"".join(lines[i] + b"\n" for i in sorted(lines)))
        # Without an ontology the classes come from the records (as when it was published).
        ctx = export_context(manifest, () if extra.get("ontology") else records())
        for fmt in formats:  # one format in memory at a time
            renders = _stored_renders(store, manifest, fmt, ctx)
            source = "stored fragments"
            if renders is None or renders.keys() != lines.keys():
                renders = {str(r["item_id"]): render_item(fmt, r, ctx) for r in records()}
                source = "rendered from the records"
            result = assemble(fmt, renders.items(), ctx, info)
            del renders
            for path, data in result.files.items():
                write(path, data)
            summary[fmt] = {**result.metadata, "source": source}
        write("exports.json", (canonical_json(summary) + "\n").encode())
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.replace(staging, directory)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return DownloadResult(directory=directory, files=sorted(files), exports=summary)
