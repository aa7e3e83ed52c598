# Named tasks. Every target sets up first (idempotent, fast when nothing changed).
.PHONY: setup demo run test lint bench bench-full bench-100k stack-up stack-down

setup:
	@bash infra/setup.sh

# The newcomer's first command: a whole campaign on the embedded default stack.
demo: setup
	.venv/bin/quorum demo

run: demo

# The test command CI runs (.ci/run): real Temporal, PostgreSQL, MinIO, started by the tests.
test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: setup
	.venv/bin/python -m bench

# The full-size set whose results are committed in bench/results/ (about an hour on 2 cores;
# run it on a quiet machine): pipeline on PostgreSQL at N = 1,000 and 10,000, the process
# curve at N = 1,000 with 1, 2, 4 worker processes, the API at 50 and 200 annotators, then
# the curves. BENCH_FULL_ARGS changes the sizes, e.g. to try it end to end in minutes:
# make bench-full BENCH_FULL_ARGS="--sizes 20 40 --process-size 20 --api-images 30" \
#   QUORUM_BENCH_RESULTS=/tmp/bench-try
bench-full: setup
	.venv/bin/python -m bench --full $(BENCH_FULL_ARGS)

# Opt-in: the pipeline at N = 100,000 (hours), then the curves again.
bench-100k: setup
	.venv/bin/python -m bench --100k $(BENCH_FULL_ARGS)

# A long-lived local stack (Temporal, PostgreSQL, MinIO) for working against real servers.
stack-up: setup
	.venv/bin/python -m infra.devstack up

stack-down:
	.venv/bin/python -m infra.devstack down
