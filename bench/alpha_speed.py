"""Alpha speed: Krippendorff's alpha over 1,000,000 labels, against the krippendorff package.

Three layouts of a million labels (coders x units, 5 classes, 10% missing where noted), the
nominal and interval metrics. Each implementation is timed as the best of several runs on the
same data, and the results are checked to agree to 1e-9. ``quality.krippendorff_alpha`` must
be no slower than ``krippendorff.alpha``. The older nominal-only
``quality.krippendorff_alpha_nominal_matrix`` is timed alongside for reference.

Run: ``python -m bench.alpha_speed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np

from bench.results_dir import load_average, machine, results_dir
from quality import krippendorff_alpha, krippendorff_alpha_nominal_matrix

RESULTS = results_dir()
LABELS = 1_000_000
LAYOUTS = [
    # (name, coders, missing share)
    ("3 coders, every unit fully coded", 3, 0.0),
    ("10 coders, 10% missing", 10, 0.1),
    ("100 coders, 10% missing", 100, 0.1),
]


def reliability_data(coders: int, missing: float, seed: int = 0) -> np.ndarray:
    """A coders x units matrix holding about 1,000,000 labels of 5 classes, nan for missing."""
    units = round(LABELS / (coders * (1 - missing)))
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 5, units)
    agree = rng.random((coders, units)) < 0.7
    data = np.where(agree, truth, rng.integers(0, 5, (coders, units))).astype(np.float64)
    data[rng.random(data.shape) < missing] = np.nan
    return data


def best_of(runs: int, fn: Callable[..., float]) -> tuple[float, float]:
    """(best seconds, value) over ``runs`` calls."""
    best = float("inf")
    value = float("nan")
    for _ in range(runs):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench.alpha_speed", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    load_at_start = load_average()
    rows = []
    for name, coders, missing in LAYOUTS:
        data = reliability_data(coders, missing)
        labels = int(np.count_nonzero(~np.isnan(data)))
        for metric in ("nominal", "interval"):
            theirs_s, theirs = best_of(
                args.runs,
                lambda d=data, m=metric: float(krippendorff.alpha(d, level_of_measurement=m)),
            )
            ours_s, ours = best_of(
                args.runs, lambda d=data, m=metric: krippendorff_alpha(d, metric=m)
            )
            row: dict[str, Any] = {
                "layout": name,
                "coders": coders,
                "units": data.shape[1],
                "labels": labels,
                "metric": metric,
                "alpha": ours,
                "abs_difference": abs(ours - theirs),
                "krippendorff_seconds": round(theirs_s, 4),
                "quality_seconds": round(ours_s, 4),
                "speedup": round(theirs_s / ours_s, 2),
                "no_slower": ours_s <= theirs_s,
            }
            if metric == "nominal":
                old_s, _ = best_of(args.runs, lambda d=data: krippendorff_alpha_nominal_matrix(d))
                row["nominal_matrix_seconds"] = round(old_s, 4)
            rows.append(row)
    result = {
        "benchmark": "alpha_speed",
        "command": " ".join(
            ["python -m bench.alpha_speed", *(sys.argv[1:] if argv is None else argv)]
        ),
        "created_at": datetime.now(UTC).isoformat(),
        "machine": machine("numpy", "krippendorff", load_at_start=load_at_start),
        "runs_per_timing": args.runs,
        "results": rows,
        "all_agree_to_1e-9": all(r["abs_difference"] <= 1e-9 for r in rows),
        "meets_target": all(r["no_slower"] for r in rows),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "alpha_speed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Krippendorff's alpha over ~1,000,000 labels (best of {args.runs}):")
    for r in rows:
        print(
            f"  {r['layout']:<34} {r['metric']:<9} krippendorff {r['krippendorff_seconds']:.3f} s"
            f"  quality {r['quality_seconds']:.3f} s  ({r['speedup']:.1f}x)"
        )
    print(f"no slower everywhere: {result['meets_target']}; wrote {path}")
    return path


if __name__ == "__main__":
    main()
