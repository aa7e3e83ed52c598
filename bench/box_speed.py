"""Box speed: per-item agreement plus consensus for 100,000 items x 3 annotators x 5 boxes.

Each item has 5 true boxes of 2 classes on a 640 x 480 image; each of 3 annotators draws every
box with 2 px of noise on each coordinate. Items are generated in chunks (not timed) and fed
to the public per-item API, as the campaign workflow's activity would:

* ``assess_item`` (agreement and consensus from one pass over the objects),
* ``object_item_agreement`` followed by ``object_consensus`` (two passes), on a subset,
* ``assess_item`` in 2 worker processes (the machine has 2 cores; items are independent).

The target is under 30 s for the 100,000 items. Run: ``python -m bench.box_speed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.results_dir import load_average, machine, results_dir
from quality import Annotation, ClassSpec, ResponseObjects, object_consensus, object_item_agreement
from quality.geometry_consensus import assess_item

RESULTS = results_dir()
CLASSES = {"car": ClassSpec("car", "box"), "person": ClassSpec("person", "box")}
IMAGE = (640, 480)
ANNOTATORS = 3
BOXES = 5
CHUNK = 2_000
TARGET_SECONDS = 30.0


def numpy_op_us() -> float:
    """Time of one tiny numpy operation, in microseconds: how busy the machine is right now
    (about 0.4 us on this machine when it is otherwise idle)."""
    small = np.ones(15)
    start = time.process_time()
    for _ in range(100_000):
        np.minimum(small, small)
    return (time.process_time() - start) / 100_000 * 1e6


def make_items(seed: int, count: int) -> list[list[ResponseObjects]]:
    """``count`` items of 3 responses with 5 noisy boxes each (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["car", "person"])
    items = []
    for n in range(count):
        size = rng.uniform(20, 120, (BOXES, 2))
        corner = rng.uniform(0, 1, (BOXES, 2)) * (np.asarray(IMAGE) - size)
        kind = labels[rng.integers(0, 2, BOXES)]
        responses = []
        for a in range(ANNOTATORS):
            rid = f"{seed}-{n}-{a}"
            noisy = np.column_stack((corner, size)) + rng.normal(0, 2.0, (BOXES, 4))
            objects = [
                Annotation(
                    rid,
                    f"annotator-{a}",
                    i,
                    str(kind[i]),
                    "box",
                    {"x": x, "y": y, "w": w, "h": h, "angle": 0.0},
                    {},
                )
                for i, (x, y, w, h) in enumerate(noisy.tolist())
            ]
            responses.append(ResponseObjects(rid, f"annotator-{a}", objects))
        items.append(responses)
    return items


def run_chunks(first_seed: int, n_items: int, mode: str) -> dict[str, float]:
    """Process ``n_items`` in chunks; returns the timed wall and CPU seconds and a checksum."""
    seconds = 0.0
    cpu = 0.0
    checksum = 0.0
    objects = 0
    done = 0
    seed = first_seed
    while done < n_items:
        items = make_items(seed, min(CHUNK, n_items - done))
        start = time.perf_counter()
        start_cpu = time.process_time()
        for responses in items:
            if mode == "assess":
                result = assess_item(responses, CLASSES, image_size=IMAGE)
                checksum += result.agreement.score
                objects += len(result.consensus)
            else:
                agreement = object_item_agreement(responses, CLASSES, image_size=IMAGE)
                consensus = object_consensus(responses, CLASSES, image_size=IMAGE)
                checksum += agreement.score
                objects += len(consensus)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        done += len(items)
        seed += 1
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "agreement_sum": checksum,
        "consensus_objects": objects,
    }


def _worker(args: tuple[int, int]) -> dict[str, float]:
    first_seed, n_items = args
    return run_chunks(first_seed, n_items, "assess")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench.box_speed", description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--two-call-items", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    n = args.items
    load_at_start = load_average()
    calibration_before = numpy_op_us()

    single = run_chunks(0, n, "assess")
    two_calls = run_chunks(0, args.two_call_items, "separate")

    per_process = [
        n // args.processes + (1 if k < n % args.processes else 0) for k in range(args.processes)
    ]
    seeds = [0]
    for count in per_process[:-1]:
        seeds.append(seeds[-1] + (count + CHUNK - 1) // CHUNK)
    with ProcessPoolExecutor(max_workers=args.processes) as pool:
        parallel_parts = list(pool.map(_worker, zip(seeds, per_process, strict=True)))
    # The processes run side by side: the wall time of the computation is the slowest one.
    parallel_seconds = max(p["seconds"] for p in parallel_parts)

    two_call_per_item = two_calls["seconds"] / args.two_call_items
    result = {
        "benchmark": "box_speed",
        "command": " ".join(
            ["python -m bench.box_speed", *(sys.argv[1:] if argv is None else argv)]
        ),
        "created_at": datetime.now(UTC).isoformat(),
        "machine": machine("numpy", "scipy", "shapely", load_at_start=load_at_start),
        "workload": {
            "items": n,
            "annotators_per_item": ANNOTATORS,
            "boxes_per_response": BOXES,
            "classes": list(CLASSES),
            "image_size": list(IMAGE),
            "noise_px": 2.0,
        },
        "target_seconds": TARGET_SECONDS,
        "numpy_op_us_before_and_after": [
            round(calibration_before, 3),
            round(numpy_op_us(), 3),
        ],
        "note": (
            "seconds are wall-clock time of the timed calls; cpu_seconds the process's CPU "
            "time, which depends less on other work sharing the machine"
        ),
        "assess_item_1_process": {
            "seconds": round(single["seconds"], 2),
            "cpu_seconds": round(single["cpu_seconds"], 2),
            "us_per_item": round(single["seconds"] / n * 1e6, 1),
            "consensus_objects": single["consensus_objects"],
            "mean_agreement": single["agreement_sum"] / n,
        },
        "assess_item_parallel": {
            "processes": args.processes,
            "seconds": round(parallel_seconds, 2),
            "per_process_seconds": [round(p["seconds"], 2) for p in parallel_parts],
            "per_process_cpu_seconds": [round(p["cpu_seconds"], 2) for p in parallel_parts],
        },
        "agreement_then_consensus_1_process": {
            "measured_items": args.two_call_items,
            "us_per_item": round(two_call_per_item * 1e6, 1),
            "cpu_us_per_item": round(two_calls["cpu_seconds"] / args.two_call_items * 1e6, 1),
            "seconds_for_all_items_extrapolated": round(two_call_per_item * n, 2),
        },
        "meets_target": parallel_seconds < TARGET_SECONDS,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "box_speed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"box speed, {n:,} items x {ANNOTATORS} annotators x {BOXES} boxes: "
        f"assess_item {single['seconds']:.1f} s in 1 process "
        f"({single['seconds'] / n * 1e6:.0f} us/item; CPU {single['cpu_seconds']:.1f} s), "
        f"{parallel_seconds:.1f} s in "
        f"{args.processes} processes; agreement + consensus as two calls "
        f"{two_call_per_item * 1e6:.0f} us/item. Target < {TARGET_SECONDS:.0f} s: "
        f"{'met' if result['meets_target'] else 'NOT met'}. Wrote {path}"
    )
    return path


if __name__ == "__main__":
    main()
