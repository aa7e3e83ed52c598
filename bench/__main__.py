"""``make bench``: every benchmark at small sizes (minutes, not hours), results as JSON.

Full-size runs are separate commands (see bench/README.md); their JSON is committed.
"""

from __future__ import annotations

import asyncio
import sys

from bench.pipeline_bench import run_pipeline_bench


def main() -> int:
    for images, processes in ((200, 1), (200, 2)):
        path = asyncio.run(run_pipeline_bench(images, processes=processes))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
