"""``make bench``: run the benchmarks at small sizes and write their JSON results."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.pipeline_bench import run_pipeline_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args(argv)
    for n in args.images:
        path = asyncio.run(run_pipeline_bench(images=n))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
