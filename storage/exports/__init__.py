"""Dataset exports: COCO, YOLO (detect, segment, pose), Pascal VOC, SageMaker-style JSON Lines.

An export is made in two steps, so that a publish can store it incrementally:

1. ``render_item(fmt, record, ctx)``: the format's rendering of one label record, on its own
   (stored with each version in export fragments, see ``storage.dataset_versions``);
2. ``assemble(fmt, entries, ctx, info)``: the format's files from the renderings of all items,
   in item_id order (numbering COCO ids, listing YOLO images, and so on).

Both are deterministic: the same records, ontology and info give the same bytes. Records the
format cannot hold (an image of unknown size, for those that need it) are left out and counted
under ``skipped`` in the export's metadata (``<format>/export-metadata.json``); objects the
format cannot hold, or malformed ones, are counted under ``notes``. An export never fails on
a record.

``export_records(records, ontology, formats)`` does both steps at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from storage.exports import coco, sagemaker, voc, yolo
from storage.exports.common import (
    ExportContext,
    ExportResult,
    Rendered,
    canonical_json,
    merge_notes,
)

__all__ = [
    "EXPORT_FORMATS",
    "ExportContext",
    "ExportResult",
    "Rendered",
    "assemble",
    "export_coco",
    "export_jsonl",
    "export_records",
    "export_voc",
    "export_yolo",
    "parse_formats",
    "render_item",
]

_MODULES: dict[str, ModuleType] = {
    coco.FORMAT: coco,
    yolo.FORMAT: yolo,
    voc.FORMAT: voc,
    sagemaker.FORMAT: sagemaker,
}
EXPORT_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc", "jsonl")


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"coco,yolo"`` (or a list) as a tuple of known formats; ValueError naming unknown ones."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in _MODULES]
    if unknown:
        raise ValueError(
            f"unknown export format(s) {', '.join(unknown)}; "
            f"choose from {', '.join(EXPORT_FORMATS)}"
        )
    if not names:
        raise ValueError(f"no export format given; choose from {', '.join(EXPORT_FORMATS)}")
    return tuple(dict.fromkeys(names))


def _module(fmt: str) -> ModuleType:
    try:
        return _MODULES[fmt]
    except KeyError:
        raise ValueError(
            f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}"
        ) from None


def render_item(fmt: str, record: Mapping[str, Any], ctx: ExportContext) -> Rendered:
    """One record in ``fmt``: ``{"render": ..., "notes": {...}}`` or ``{"skip": reason}``."""
    rendered: Rendered = _module(fmt).render(record, ctx)
    if not rendered.get("notes"):
        rendered.pop("notes", None)
    return rendered


def assemble(
    fmt: str,
    entries: Iterable[tuple[str, Rendered]],
    ctx: ExportContext,
    info: Mapping[str, Any] | None = None,
) -> ExportResult:
    """The files of ``fmt`` from ``(item_id, rendered)`` pairs (any order; sorted here)."""
    info = dict(info or {})
    ordered = sorted(entries, key=lambda entry: entry[0])
    skipped: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    kept: list[tuple[str, Any]] = []
    for item_id, rendered in ordered:
        if "skip" in rendered:
            skipped[str(rendered["skip"])] += 1
            continue
        merge_notes(notes, rendered.get("notes"))
        kept.append((item_id, rendered["render"]))
    files: dict[str, bytes] = _module(fmt).assemble(kept, ctx, info)
    metadata: dict[str, Any] = {
        "format": fmt,
        "dataset": info.get("dataset", ctx.dataset),
        "version": info.get("version"),
        "items": len(ordered),
        "exported": len(kept),
        "skipped": dict(sorted(skipped.items())),
        "notes": dict(sorted(notes.items())),
    }
    files[f"{fmt}/export-metadata.json"] = (canonical_json(metadata) + "\n").encode()
    return ExportResult(format=fmt, files=files, metadata=metadata)


def export_records(
    records: Iterable[Mapping[str, Any]],
    ontology: Mapping[str, Any] | None,
    formats: Sequence[str] = EXPORT_FORMATS,
    *,
    dataset: str = "dataset",
    info: Mapping[str, Any] | None = None,
) -> dict[str, ExportResult]:
    """Every format in ``formats`` for ``records`` (label records) and ``ontology`` (JSON)."""
    records = list(records)
    ctx = ExportContext.build(ontology, dataset, records)
    return {
        fmt: assemble(
            fmt, ((str(r["item_id"]), render_item(fmt, r, ctx)) for r in records), ctx, info
        )
        for fmt in parse_formats(formats)
    }


def export_coco(
    records: Iterable[Mapping[str, Any]], ontology: Mapping[str, Any] | None, **kw: Any
) -> ExportResult:
    return export_records(records, ontology, ("coco",), **kw)["coco"]


def export_yolo(
    records: Iterable[Mapping[str, Any]], ontology: Mapping[str, Any] | None, **kw: Any
) -> ExportResult:
    return export_records(records, ontology, ("yolo",), **kw)["yolo"]


def export_voc(
    records: Iterable[Mapping[str, Any]], ontology: Mapping[str, Any] | None, **kw: Any
) -> ExportResult:
    return export_records(records, ontology, ("voc",), **kw)["voc"]


def export_jsonl(
    records: Iterable[Mapping[str, Any]], ontology: Mapping[str, Any] | None, **kw: Any
) -> ExportResult:
    return export_records(records, ontology, ("jsonl",), **kw)["jsonl"]
