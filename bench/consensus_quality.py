"""Consensus quality: synthetic items with a known truth, per geometry type.

Each item holds 3 true objects. Each of 3 annotators draws them with Gaussian noise of a known
size (sigma, in px, on every coordinate or vertex; the three annotators are 1x, 1.5x and 2x a
base sigma), misses each object with probability 0.15 and adds a spurious object with
probability 0.15. Keypoint annotators also flip a point's visibility (0.1) or leave it out
(0.05); polyline annotators draw half of the lines backwards. The consensus of the three
(`quality.object_consensus`, default quorum 0.5) and each annotator are scored against the
truth with the same machinery as agreement:

* ``score``: the pair agreement ``A(x, truth)`` of `quality.matching`: matched similarity
  (IoU, or OKS for keypoints, or the polyline similarity) summed over matched objects, over the
  objects of either side counted once; misses and spurious objects count as 0.
* ``matched_similarity``: the mean similarity of the matched objects only.
* ``recall`` / ``precision``: the share of true / drawn objects that matched.

The consensus must beat the mean single annotator's ``score`` for every type. Run:
``python -m bench.consensus_quality``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.results_dir import load_average, machine, results_dir
from quality import (
    Annotation,
    ClassSpec,
    ResponseObjects,
    object_consensus,
    object_item_agreement,
    rle_encode,
)
from quality.raster import rasterize_polygon

RESULTS = results_dir()
OBJECTS_PER_ITEM = 3
NOISE_SCALES = (1.0, 1.5, 2.0)
MISS = 0.15
EXTRA = 0.15
SIGMAS = (0.05, 0.05, 0.08, 0.08, 0.1, 0.1)
# A stick figure: head, neck, hands, feet, in units of its size.
SKELETON = np.array([[0.5, 0.0], [0.5, 0.25], [0.1, 0.5], [0.9, 0.5], [0.3, 1.0], [0.7, 1.0]])

CLASSES = {
    "box": ClassSpec("box", "box"),
    "polygon": ClassSpec("polygon", "polygon"),
    "mask": ClassSpec("mask", "mask"),
    "keypoints": ClassSpec("keypoints", "keypoints", sigmas=SIGMAS),
    "polyline": ClassSpec("polyline", "polyline"),
}
IMAGE = {
    "box": (512, 512),
    "polygon": (512, 512),
    "mask": (256, 256),
    "keypoints": (512, 512),
    "polyline": (512, 512),
}
BASE_SIGMA = {"box": 4.0, "polygon": 3.0, "mask": 2.0, "keypoints": 4.0, "polyline": 4.0}


# --- truth and noisy copies, per type --------------------------------------------------------


def _star(
    rng: np.random.Generator, size: tuple[int, int], radius: tuple[float, float]
) -> np.ndarray:
    r = rng.uniform(*radius)
    centre = rng.uniform(r, np.asarray(size) - r)
    t = np.sort(rng.uniform(0, 2 * np.pi, 10))
    rr = r * rng.uniform(0.7, 1.0, 10)
    return centre + np.column_stack((rr * np.cos(t), rr * np.sin(t)))


def truth_object(kind: str, rng: np.random.Generator) -> Any:
    w, h = IMAGE[kind]
    if kind == "box":
        size = rng.uniform(40, 120, 2)
        return np.concatenate((rng.uniform(0, 1, 2) * ([w, h] - size), size))
    if kind == "polygon":
        return _star(rng, (w, h), (30, 70))
    if kind == "mask":
        return _star(rng, (w, h), (20, 50))
    if kind == "keypoints":
        scale = rng.uniform(60, 120)
        origin = rng.uniform(0, 1, 2) * ([w, h] - np.array([scale, scale]))
        visibility = rng.choice([1, 2], size=len(SKELETON), p=[0.2, 0.8])
        return np.column_stack((origin + SKELETON * scale, visibility))
    # polyline: a random walk of 5 vertices, about 200 px long
    start = rng.uniform(100, 400, 2)
    steps = rng.normal(0, 1, (4, 2))
    steps = 50 * steps / np.linalg.norm(steps, axis=1, keepdims=True)
    steps[:, 0] = np.abs(steps[:, 0])
    return start + np.vstack(([0, 0], np.cumsum(steps, axis=0)))


def noisy_copy(kind: str, truth: Any, sigma: float, rng: np.random.Generator) -> Any:
    if kind == "box":
        return truth + rng.normal(0, sigma, 4)
    if kind in ("polygon", "mask"):
        return truth + rng.normal(0, sigma, truth.shape)
    if kind == "keypoints":
        out = truth.copy()
        out[:, :2] += rng.normal(0, sigma, (len(out), 2))
        flip = rng.random(len(out)) < 0.1
        out[flip, 2] = 3 - out[flip, 2]
        out[rng.random(len(out)) < 0.05, 2] = 0
        return out
    line = truth + rng.normal(0, sigma, truth.shape)
    return line[::-1] if rng.random() < 0.5 else line


def to_data(kind: str, geometry: Any) -> dict[str, Any]:
    if kind == "box":
        x, y, w, h = (float(v) for v in geometry)
        return {"x": x, "y": y, "w": max(w, 1.0), "h": max(h, 1.0), "angle": 0.0}
    if kind in ("polygon", "polyline"):
        return {"points": np.asarray(geometry).tolist()}
    if kind == "mask":
        width, height = IMAGE[kind]
        return {"rle": rle_encode(rasterize_polygon(np.asarray(geometry), (height, width)))}
    return {"points": [[float(x), float(y), int(v)] for x, y, v in geometry]}


def response(rid: str, annotator: str, kind: str, datas: list[dict[str, Any]]) -> ResponseObjects:
    return ResponseObjects(
        rid,
        annotator,
        [
            Annotation(rid, annotator, i, kind, CLASSES[kind].geometry, d, {})
            for i, d in enumerate(datas)
        ],
    )


# --- scoring ---------------------------------------------------------------------------------


def score_against_truth(
    kind: str, candidate: ResponseObjects, truth: ResponseObjects
) -> dict[str, float]:
    pair = object_item_agreement([candidate, truth], CLASSES, image_size=IMAGE[kind]).pairs[0]
    n_drawn, n_true = len(candidate.objects), len(truth.objects)
    return {
        "score": pair.score,
        "matched_similarity": float(np.mean([s for _, _, s in pair.matches]))
        if pair.matches
        else float("nan"),
        "recall": len(pair.matches) / n_true if n_true else 1.0,
        "precision": len(pair.matches) / n_drawn if n_drawn else 1.0,
    }


def _mean(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if not np.isnan(r[key])]
    return float(np.mean(values)) if values else float("nan")


def evaluate(kind: str, items: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    base = BASE_SIGMA[kind]
    per_annotator: list[list[dict[str, float]]] = [[] for _ in NOISE_SCALES]
    consensus_rows: list[dict[str, float]] = []
    for n in range(items):
        truths = [truth_object(kind, rng) for _ in range(OBJECTS_PER_ITEM)]
        truth = response(f"truth-{n}", "truth", kind, [to_data(kind, t) for t in truths])
        responses = []
        for a, scale in enumerate(NOISE_SCALES):
            drawn = [noisy_copy(kind, t, base * scale, rng) for t in truths if rng.random() > MISS]
            if rng.random() < EXTRA:
                drawn.append(noisy_copy(kind, truth_object(kind, rng), base * scale, rng))
            rid = f"{n}-{a}"
            responses.append(
                response(rid, f"annotator-{a}", kind, [to_data(kind, g) for g in drawn])
            )
        for a, r in enumerate(responses):
            per_annotator[a].append(score_against_truth(kind, r, truth))
        agreed = object_consensus(responses, CLASSES, image_size=IMAGE[kind])
        as_response = response(f"consensus-{n}", "consensus", kind, [dict(o.data) for o in agreed])
        consensus_rows.append(score_against_truth(kind, as_response, truth))

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        return {
            k: round(_mean(rows, k), 4)
            for k in ("score", "matched_similarity", "recall", "precision")
        }

    annotators = [summary(rows) for rows in per_annotator]
    best = max(range(len(annotators)), key=lambda a: annotators[a]["score"])
    mean_single = {k: round(float(np.mean([s[k] for s in annotators])), 4) for k in annotators[0]}
    consensus_summary = summary(consensus_rows)
    return {
        "similarity": "OKS"
        if kind == "keypoints"
        else ("polyline similarity" if kind == "polyline" else "IoU"),
        "items": items,
        "noise_sigma_px": [base * s for s in NOISE_SCALES],
        "consensus": consensus_summary,
        "mean_single_annotator": mean_single,
        "best_single_annotator": {"annotator": best, **annotators[best]},
        "annotators": annotators,
        "consensus_beats_mean_single": consensus_summary["score"] > mean_single["score"],
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench.consensus_quality", description=__doc__)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    load_at_start = load_average()
    results = {kind: evaluate(kind, args.items, args.seed + k) for k, kind in enumerate(CLASSES)}
    out = {
        "benchmark": "consensus_quality",
        "command": " ".join(
            ["python -m bench.consensus_quality", *(sys.argv[1:] if argv is None else argv)]
        ),
        "created_at": datetime.now(UTC).isoformat(),
        "machine": machine("numpy", "scipy", "shapely", load_at_start=load_at_start),
        "setup": {
            "objects_per_item": OBJECTS_PER_ITEM,
            "annotators": len(NOISE_SCALES),
            "noise_scales": list(NOISE_SCALES),
            "miss_probability": MISS,
            "extra_probability": EXTRA,
            "quorum": 0.5,
            "seed": args.seed,
        },
        "results": results,
        "meets_target": all(r["consensus_beats_mean_single"] for r in results.values()),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "consensus_quality.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"consensus quality vs truth, {args.items} items per type (score; matched similarity)")
    print(f"  {'type':<10} {'consensus':>18} {'mean single':>18} {'best single':>18}")
    for kind, r in results.items():
        cells = [r["consensus"], r["mean_single_annotator"], r["best_single_annotator"]]
        print(
            f"  {kind:<10} "
            + " ".join(f"{c['score']:>8.3f}; {c['matched_similarity']:.3f}" for c in cells)
        )
    print(
        f"consensus beats the mean single annotator for every type: {out['meets_target']}; "
        f"wrote {path}"
    )
    return path


if __name__ == "__main__":
    main()
