"""The ``quorum`` command: run the demo, the worker and the API; launch and inspect campaigns.

Every command reads the same settings (``QUORUM_*`` environment variables, see the README).
Errors a person can fix print what to fix and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from infra.settings import Settings, get_settings


class UsageError(Exception):
    """A mistake the person running the command can fix; printed without a traceback."""


def load_spec_file(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc


def _cmd_validate(args: argparse.Namespace, _: Settings) -> int:
    from schemas.campaign_spec import parse_spec

    spec, errors = parse_spec(load_spec_file(args.spec))
    if spec is None:
        print(
            f"{args.spec}: the spec has {len(errors)} error(s); no campaign was started:",
            file=sys.stderr,
        )
        for e in errors:
            print(f"  {e.field}: {e.message}", file=sys.stderr)
        return 2
    print(
        f"{args.spec}: valid ({spec.name}, {len(spec.ontology.classes)} classes, "
        + (
            f"k={spec.annotators_per_image})"
            if spec.redundancy is None
            else f"{spec.min_annotators}..{spec.max_annotators} annotators to confidence "
            f"{spec.threshold})"
        )
    )
    return 0


async def _launch(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import create_engine, create_sessionmaker
    from infra.temporal_client import connect
    from services.campaigns import create_campaign, start_campaign, validate_spec
    from services.errors import InvalidInput

    data = load_spec_file(args.spec)
    try:
        spec = validate_spec(data)
    except InvalidInput as exc:
        print(f"{args.spec}: the spec has errors; no campaign was started:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e.field}: {e.message}", file=sys.stderr)
        return 2
    engine = create_engine(settings.database_url)
    try:
        sessions = create_sessionmaker(engine)
        try:
            campaign = await create_campaign(
                sessions, spec, created_by="cli", base_dir=args.spec.resolve().parent
            )
        except InvalidInput as exc:
            for e in exc.errors:
                print(f"{args.spec}: {e.field}: {e.message}", file=sys.stderr)
            return 2
        client = await connect(settings.temporal)
        workflow_id = await start_campaign(
            sessions, client, campaign.id, settings.temporal.task_queue
        )
    finally:
        await engine.dispose()
    print(json.dumps({"id": campaign.id, "items": campaign.item_count, "workflow_id": workflow_id}))
    return 0


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import create_engine, create_sessionmaker
    from services.campaigns import campaign_status
    from services.errors import NotFound

    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            try:
                print(json.dumps(await campaign_status(session, args.campaign_id), indent=2))
            except NotFound as exc:
                raise UsageError(exc.message) from exc
    finally:
        await engine.dispose()
    return 0


async def _snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import create_engine, create_sessionmaker
    from infra.temporal_client import connect
    from services.campaigns import publish_snapshot
    from services.errors import QuorumError

    engine = create_engine(settings.database_url)
    try:
        client = await connect(settings.temporal)
        result = await publish_snapshot(
            create_sessionmaker(engine),
            client,
            args.campaign_id,
            settings.temporal.task_queue,
            args.request_id or uuid.uuid4().hex,
        )
    except QuorumError as exc:
        raise UsageError(exc.message) from exc
    finally:
        await engine.dispose()
    print(json.dumps(result.model_dump()))
    return 0


async def _db_upgrade(_: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import upgrade_database

    await upgrade_database(settings.database_url)
    print(f"database at {settings.database_url.split('@')[-1]} is up to date")
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.worker_process import run_workers

    run_workers(args.processes)
    return 0


def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app

    api = settings.api
    workers = args.workers or api.workers
    options: dict[str, Any] = {
        "host": args.host or api.host,
        "port": args.port or api.port,
        "log_level": "info",
        "timeout_keep_alive": api.keep_alive_seconds,
        "backlog": api.backlog,
        "limit_concurrency": api.limit_concurrency,
    }
    if workers > 1:
        # Each process builds its own app (and database pool) from the same QUORUM_* settings.
        uvicorn.run("api.app:create_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings=settings), **options)
    return 0


def _cmd_dev(args: argparse.Namespace, _: Settings) -> int:
    from infra.devstack import main as devstack_main

    return devstack_main(args.rest)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli.demo import run_demo

    return asyncio.run(run_demo(settings, images=args.images, seed=args.seed))


def _cmd_datasets(args: argparse.Namespace, settings: Settings) -> int:
    from cli.datasets import run_datasets

    return run_datasets(args.rest, settings)


def _cmd_consensus(args: argparse.Namespace, _: Settings) -> int:
    from cli.consensus import run as run_consensus

    return run_consensus(args)


def build_parser() -> argparse.ArgumentParser:
    from cli.consensus import add_arguments as add_consensus_arguments

    parser = argparse.ArgumentParser(prog="quorum", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a demo campaign end to end on the embedded stack")
    demo.add_argument("--images", type=int, default=30)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)

    worker = sub.add_parser("worker", help="run worker processes")
    worker.add_argument("--processes", type=int, default=1)
    worker.set_defaults(func=_cmd_worker)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument(
        "--workers", type=int, help="server processes (default: QUORUM_API__WORKERS, 1)"
    )
    api.set_defaults(func=_cmd_api)

    campaign = sub.add_parser("campaign", help="launch and inspect campaigns")
    csub = campaign.add_subparsers(dest="action", required=True)
    v = csub.add_parser("validate", help="check a spec file, field by field")
    v.add_argument("spec", type=Path)
    v.set_defaults(func=_cmd_validate)
    lc = csub.add_parser("launch", help="store a campaign and start its workflow")
    lc.add_argument("spec", type=Path)
    lc.set_defaults(func=lambda a, s: asyncio.run(_launch(a, s)))
    st = csub.add_parser("status", help="a campaign's progress")
    st.add_argument("campaign_id")
    st.set_defaults(func=lambda a, s: asyncio.run(_status(a, s)))

    snap = csub.add_parser("snapshot", help="publish the labels final so far, mid-campaign")
    snap.add_argument("campaign_id")
    snap.add_argument("--request-id", help="repeat it to get the same version back")
    snap.set_defaults(func=lambda a, s: asyncio.run(_snapshot(a, s)))

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=lambda a, s: asyncio.run(_db_upgrade(a, s)))

    ds = sub.add_parser(
        "datasets",
        help="dataset versions: list, show, diff, export, verify, deprecate, rollback",
        add_help=False,
        prefix_chars="\0",  # hand every word, --help included, to cli.datasets
    )
    ds.add_argument("rest", nargs=argparse.REMAINDER)
    ds.set_defaults(func=_cmd_datasets)

    from cli.audit import build_parser as audit_parser
    from cli.audit import run_audit

    audit = sub.add_parser("audit", help="read-only commands for auditors")
    audit_parser(audit)
    audit.set_defaults(func=run_audit)

    from cli.prelabels import build_parser as prelabels_parser
    from cli.prelabels import run_prelabels

    prelabels = sub.add_parser("prelabels", help="import a model's predictions for a campaign")
    prelabels_parser(prelabels)
    prelabels.set_defaults(func=run_prelabels)

    consensus = sub.add_parser(
        "consensus",
        help="infer one label per task from a task,worker,label CSV (or geometry from JSON Lines)",
    )
    add_consensus_arguments(consensus)
    consensus.set_defaults(func=_cmd_consensus)

    dev = sub.add_parser(
        "dev", help="build, start and stop the local servers (see infra/devstack.py)"
    )
    dev.add_argument("rest", nargs=argparse.REMAINDER)
    dev.set_defaults(func=_cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names the variable
        print(f"quorum: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args, settings)
        return code
    except UsageError as exc:
        print(f"quorum: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
