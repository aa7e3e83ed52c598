# Named tasks. Every target sets up first (idempotent, fast when nothing changed).
.PHONY: setup demo run test lint bench stack-up stack-down

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

# A long-lived local stack (Temporal, PostgreSQL, MinIO) for working against real servers.
stack-up: setup
	.venv/bin/python -m infra.devstack up

stack-down:
	.venv/bin/python -m infra.devstack down
