"""What every exporter shares: the classes of the ontology, image sizes, file stems, notes.

Exporters work on plain JSON (label records and the ontology as the manifest stores them), not
on the pydantic models of ``schemas``: a stored version must stay exportable even after the
schemas change, and a malformed object must cost a note in the export's metadata, never the
export itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import unquote

__all__ = [
    "ClassInfo",
    "ExportContext",
    "ExportResult",
    "Rendered",
    "canonical_json",
    "finite",
    "image_extension",
    "image_size",
    "item_stem",
    "merge_notes",
    "record_tags",
]

# Bumped whenever an exporter's output changes for the same input, so that a publish re-renders
# the stored export fragments instead of reusing ones rendered by older code.
RENDER_VERSION = 1

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")

# What an exporter makes of one record: {"render": <format-specific JSON>, "notes": {...}} or
# {"skip": "<reason>"} when the format cannot hold the record (an image of unknown size).
Rendered = dict[str, Any]


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON: the same object always gives the same bytes."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclass(frozen=True)
class ClassInfo:
    name: str
    geometry: str
    rotated: bool = False
    keypoints: tuple[str, ...] = ()
    skeleton: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExportContext:
    """Everything besides the record that an exporter's output depends on."""

    dataset: str
    classes: tuple[ClassInfo, ...]
    multi_label: bool = False

    @classmethod
    def build(
        cls,
        ontology: Mapping[str, Any] | None,
        dataset: str = "dataset",
        records: Iterable[Mapping[str, Any]] = (),
    ) -> ExportContext:
        """From the ontology JSON; without one, from the classes the records use."""
        classes: list[ClassInfo] = []
        if ontology and isinstance(ontology.get("classes"), list):
            for raw in ontology["classes"]:
                if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
                    continue
                keypoints = tuple(
                    str(k["name"]) if isinstance(k, Mapping) else str(k)
                    for k in raw.get("keypoints") or []
                )
                skeleton = tuple(
                    (str(pair[0]), str(pair[1]))
                    for pair in raw.get("skeleton") or []
                    if isinstance(pair, Sequence) and len(pair) == 2
                )
                classes.append(
                    ClassInfo(
                        name=raw["name"],
                        geometry=str(raw.get("geometry") or "tag"),
                        rotated=bool(raw.get("rotated", False)),
                        keypoints=keypoints,
                        skeleton=skeleton,
                    )
                )
            multi_label = bool(ontology.get("multi_label", False))
        else:
            seen: dict[str, str] = {}
            for record in records:
                for tag in record.get("labels") or []:
                    seen.setdefault(str(tag), "tag")
                for obj in record.get("objects") or []:
                    if isinstance(obj, Mapping) and isinstance(obj.get("label"), str):
                        seen.setdefault(obj["label"], str(obj.get("type") or "tag"))
            classes = [ClassInfo(name, geometry) for name, geometry in sorted(seen.items())]
            multi_label = True
        return cls(dataset=dataset, classes=tuple(classes), multi_label=multi_label)

    @cached_property
    def _by_name(self) -> dict[str, ClassInfo]:
        return {c.name: c for c in self.classes}

    def by_name(self, name: Any) -> ClassInfo | None:
        return self._by_name.get(name) if isinstance(name, str) else None

    @cached_property
    def cache(self) -> dict[str, Any]:
        """Per-context tables an exporter derives once (class indices and the like)."""
        return {}

    def with_geometry(self, *geometries: str) -> list[ClassInfo]:
        return [c for c in self.classes if c.geometry in geometries]

    def fingerprint(self, fmt: str) -> str:
        """Changes whenever ``fmt``'s rendering of the same record could change."""
        body = {
            "format": fmt,
            "render_version": RENDER_VERSION,
            "dataset": self.dataset,
            "multi_label": self.multi_label,
            "classes": [
                [c.name, c.geometry, c.rotated, list(c.keypoints), [list(p) for p in c.skeleton]]
                for c in self.classes
            ],
        }
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


@dataclass
class ExportResult:
    """The files of one export (paths relative to the export directory) and its metadata."""

    format: str
    files: dict[str, bytes]
    metadata: dict[str, Any] = field(default_factory=dict)


def finite(value: Any) -> float:
    """``value`` as a finite float, or ValueError (an object we cannot export)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not finite: {value!r}")
    return number


def image_size(record: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(width, height)`` when both are known positive integers."""
    width, height = record.get("width"), record.get("height")
    if isinstance(width, bool) or isinstance(height, bool):
        return None
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


def _uri_path(uri: Any) -> str:
    # Only the last path segment matters here; urlparse costs more than everything else.
    if not isinstance(uri, str):
        return ""
    path = uri.split("?", 1)[0].split("#", 1)[0] if "://" in uri else uri
    return unquote(path) if "%" in path else path


def image_extension(record: Mapping[str, Any]) -> str:
    path = _uri_path(record.get("image")).lower()
    return next((ext for ext in IMAGE_EXTENSIONS if path.endswith(ext)), ".jpg")


def item_stem(item_id: str) -> str:
    """A file name stem for the item: its id when that is a safe file name, else a safe form
    of it plus a short hash (so two ids never share a stem)."""
    if _SAFE_STEM.fullmatch(item_id):
        return item_id
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._-")[:100] or "item"
    return f"{safe}-{hashlib.sha256(item_id.encode()).hexdigest()[:10]}"


def record_tags(record: Mapping[str, Any]) -> list[str]:
    """The image-level classes: the record's ``labels``, else its tag objects."""
    labels = record.get("labels")
    if isinstance(labels, list):
        return sorted({str(label) for label in labels})
    return sorted(
        {
            str(o.get("label"))
            for o in record.get("objects") or []
            if isinstance(o, Mapping) and o.get("type") == "tag"
        }
    )


def merge_notes(total: Counter[str], notes: Mapping[str, Any] | None) -> None:
    for key, count in (notes or {}).items():
        total[str(key)] += int(count)
