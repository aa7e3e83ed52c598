"""The scale curve and the process curve, from the pipeline results in bench/results/.

Scale curve: one worker process, N = 1,000, 10,000, 100,000 images (whatever has been run).
A pipeline that scales has the same cost per image at every N: each per-image figure (time,
history events, workflow tasks, campaign events) and the worker's memory while labeling must
stay within FLAT = 1.5x of its smallest value across N, or the check fails. "While labeling" is
the largest resident size in the run's ``worker_rss_timeline`` before the last answer was
accepted; after it the campaign publishes its dataset. That peak is reported beside it
(``worker_peak_rss_mb``), not checked: the committed runs predate commit a93bc20, before which
the publish held every record in memory (1.92 GB at N = 100,000). The publish is now bounded by
one dataset partition, which ``bench.publish_memory`` measures on its own at each N.

Process curve: one N, 1, 2, 4 worker processes: images/s, speedup over one process, and the
efficiency (speedup / processes).

Reads ``pipeline-<db>-<N>-p<P>[-memory].json`` from the results directory ($QUORUM_BENCH_RESULTS
or bench/results/), prints the tables and writes ``curves.json`` beside them. Runs whose Temporal
dev server kept its state in memory (``-memory``) and runs on its SQLite file are never compared
with each other: each store gets its own scale curve (``scale_by_store``), and ``scale`` is the
one that reaches the largest N.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_dir import command_line, invoked_by, results_dir

FLAT = 1.5
NAME = re.compile(r"^pipeline-(?P<db>[a-z]+)-(?P<n>\d+)-p(?P<p>\d+)(?:-(?P<store>memory))?\.json$")


def _get(doc: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _labeling_rss(timeline: list[Any] | None) -> float | None:
    """The largest worker resident size sampled before the last answer was accepted, from a
    ``[[seconds, answers, [MB per worker]], ...]`` timeline; None without one."""
    if not timeline:
        return None
    last = max(answers for _, answers, _ in timeline)
    sizes = [
        mb
        for _, answers, per_worker in timeline
        if answers < last
        for mb in per_worker
        if mb is not None
    ]
    return max(sizes) if sizes else None


def load_points(directory: Path, db: str) -> list[dict[str, Any]]:
    """One row per pipeline result of database ``db``, with the figures the curves need."""
    rows = []
    for path in sorted(directory.glob("pipeline-*.json")):
        match = NAME.match(path.name)
        if not match or match["db"] != db:
            continue
        doc = json.loads(path.read_text())
        r = doc["results"]
        images = doc["config"]["images"]
        rss = [m for m in r.get("worker_peak_rss_mb") or [] if m is not None]
        labeling = _labeling_rss(r.get("worker_rss_timeline"))
        rows.append(
            {
                "file": path.name,
                "images": images,
                "processes": doc["config"]["worker_processes"],
                # Runs from before the option existed used the file store.
                "temporal_store": doc["config"].get("temporal_store", "file"),
                "images_per_second": r["images_per_second"],
                "floor_images_per_second": r["floor_images_per_second"],
                "ratio_to_floor": r["ratio_to_floor"],
                "ms_per_image": r.get("ms_per_image") or round(r["seconds"] / images * 1000, 2),
                "agreed_history_events": _get(r, "per_image", "agreed", "history_events"),
                "agreed_workflow_tasks": _get(r, "per_image", "agreed", "workflow_tasks"),
                "review_history_events": _get(r, "per_image", "review", "history_events"),
                "review_workflow_tasks": _get(r, "per_image", "review", "workflow_tasks"),
                "campaign_events_per_image": _get(r, "per_image", "campaign_events"),
                "worker_labeling_rss_mb": labeling,
                "worker_peak_rss_mb": max(rss) if rss else None,
                "load_average_at_start": _get(doc, "machine", "load_average", "at_start"),
                "at": doc.get("at"),
                "command": doc.get("command"),
            }
        )
    return rows


def scale_curve(rows: list[dict[str, Any]]) -> dict[str, Any]:
    points = sorted((r for r in rows if r["processes"] == 1), key=lambda r: r["images"])
    checks: dict[str, Any] = {}
    for key in (
        "ms_per_image",
        "agreed_history_events",
        "agreed_workflow_tasks",
        "campaign_events_per_image",
        "worker_labeling_rss_mb",
    ):
        values = [p[key] for p in points if p[key] is not None]
        if len(values) < 2 or min(values) <= 0:
            checks[key] = {"ratio": None, "flat": None, "note": "fewer than two points"}
            continue
        ratio = round(max(values) / min(values), 3)
        checks[key] = {"ratio": ratio, "flat": ratio <= FLAT}
    verdicts = [c["flat"] for c in checks.values() if c["flat"] is not None]
    return {
        "points": points,
        "flatness_limit": FLAT,
        "checks": checks,
        "flat": all(verdicts) if verdicts else None,
    }


def process_curve(rows: list[dict[str, Any]], images: int | None) -> dict[str, Any]:
    if images is None:
        # The N with the most process counts measured (ties: the smaller N).
        counts: dict[int, int] = {}
        for r in rows:
            counts[r["images"]] = counts.get(r["images"], 0) + 1
        images = min(counts, key=lambda n: (-counts[n], n)) if counts else None
    points = sorted((r for r in rows if r["images"] == images), key=lambda r: r["processes"])
    one = next((p for p in points if p["processes"] == 1), None)
    for p in points:
        speedup = p["images_per_second"] / one["images_per_second"] if one else None
        p["speedup"] = round(speedup, 2) if speedup is not None else None
        p["efficiency"] = round(speedup / p["processes"], 2) if speedup is not None else None
    return {"images": images, "points": points}


def _table(
    title: str, points: list[dict[str, Any]], columns: list[tuple[str, str, Callable[[Any], str]]]
) -> str:
    head = " | ".join(label for label, _, _ in columns)
    lines = [title, "", f"| {head} |", "|" + "---|" * len(columns)]
    for p in points:
        cells = [fmt(p.get(key)) if p.get(key) is not None else "-" for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_store(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    stores: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        stores.setdefault(r["temporal_store"], []).append(r)
    return stores


def main_scale(scales: dict[str, dict[str, Any]]) -> str | None:
    """The store whose one-process curve reaches the largest N (ties: more points, then
    memory, the store the full set runs on)."""
    if not scales:
        return None
    return max(
        scales,
        key=lambda store: (
            max((p["images"] for p in scales[store]["points"]), default=0),
            len(scales[store]["points"]),
            store == "memory",
        ),
    )


def process_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the store with the most process counts measured at one N."""
    stores = by_store(rows)
    if not stores:
        return []
    best = max(
        stores,
        key=lambda store: max(
            sum(1 for r in stores[store] if r["images"] == n) for n in {r["images"] for r in rows}
        ),
    )
    return [dict(r) for r in stores[best]]


def render(curves: dict[str, Any]) -> str:
    text = [
        _scale_table(curves["database"], store, scale)
        for store, scale in curves["scale_by_store"].items()
    ]
    process = curves["process"]
    text.append("")
    text.append(
        _table(
            f"Process curve ({curves['database']}, N = {process['images']})",
            process["points"],
            [
                ("processes", "processes", str),
                ("images/s", "images_per_second", "{:.2f}".format),
                ("speedup", "speedup", "{:.2f}".format),
                ("efficiency", "efficiency", "{:.2f}".format),
                ("ratio to floor", "ratio_to_floor", "{:.2f}".format),
                ("worker RSS MB", "worker_peak_rss_mb", "{:.1f}".format),
                ("Temporal store", "temporal_store", str),
            ],
        )
    )
    return "\n".join(text)


def _scale_table(database: str, store: str, scale: dict[str, Any]) -> str:
    num = "{:,}".format
    f1, f2 = "{:.1f}".format, "{:.2f}".format
    text = [
        _table(
            f"Scale curve ({database}, 1 worker process, Temporal state in {store})",
            scale["points"],
            [
                ("N", "images", num),
                ("images/s", "images_per_second", f2),
                ("floor/s", "floor_images_per_second", f2),
                ("ratio", "ratio_to_floor", f2),
                ("ms/image", "ms_per_image", f1),
                ("events/img (agreed)", "agreed_history_events", f1),
                ("tasks/img (agreed)", "agreed_workflow_tasks", f2),
                ("events/img (review)", "review_history_events", f1),
                ("tasks/img (review)", "review_workflow_tasks", f2),
                ("campaign events/img", "campaign_events_per_image", f2),
                ("worker RSS MB labeling", "worker_labeling_rss_mb", f1),
                ("worker RSS MB peak (publish)", "worker_peak_rss_mb", f1),
            ],
        )
    ]
    for key, check in scale["checks"].items():
        verdict = {True: "flat", False: "NOT flat", None: "not enough points"}[check["flat"]]
        ratio = f"max/min {check['ratio']}" if check["ratio"] is not None else ""
        text.append(f"  {key}: {verdict} {ratio} (limit {scale['flatness_limit']}x)")
    text.append(f"  scale curve flat: {scale['flat']}")
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.curves",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--process-size", type=int, help="N of the process curve")
    parser.add_argument("--out", type=Path, help="default: curves.json in the results directory")
    args = parser.parse_args(argv)
    directory = results_dir()
    rows = load_points(directory, args.db)
    scales = {store: scale_curve(group) for store, group in sorted(by_store(rows).items())}
    main_store = main_scale(scales)
    curves = {
        "benchmark": "curves",
        "at": datetime.now(UTC).isoformat(),
        "command": command_line("bench.curves", argv),
        "invoked_by": invoked_by(),
        "database": args.db,
        "sources": [r["file"] for r in rows],
        "scale_by_store": scales,
        "scale_store": main_store,
        "scale": scales[main_store] if main_store else scale_curve([]),
        "process": process_curve(process_rows(rows), args.process_size),
    }
    out = args.out or directory / "curves.json"
    out.write_text(json.dumps(curves, indent=2) + "\n")
    print(render(curves))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
