"""``quorum audit``: the auditor's read-only commands.

    quorum audit item ITEM_ID                     an item's timeline: audit entries and workflow
                                                  events, merged in time order
    quorum audit label DATASET VERSION ITEM_ID    a published label traced to its answers and
                                                  annotators
    quorum audit verify CAMPAIGN_ID               the hash chain, its anchors and the archived
                                                  histories; names the first broken link
    quorum audit export CAMPAIGN_ID --to DIR      audit.jsonl and histories.jsonl for outside
                                                  auditors

The database is opened read-only: nothing here can change state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from temporalio.client import Client

from infra.settings import Settings
from infra.temporal_client import connect
from services.audit_views import (
    export_campaign,
    item_timeline,
    jsonl,
    read_only_session,
    trace_label,
    verify_campaign,
)
from services.errors import QuorumError
from storage import open_store


async def _temporal_or_none(settings: Settings) -> Client | None:
    try:
        return await asyncio.wait_for(connect(settings.temporal), timeout=5)
    except Exception:
        print("audit: Temporal is not reachable; using archived histories only", file=sys.stderr)
        return None


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.store, settings.s3, settings.home)
    try:
        async with read_only_session(settings.database_url) as session:
            if args.action == "item":
                client = await _temporal_or_none(settings)
                for event in await item_timeline(session, client, store, args.item_id):
                    print(event.line())
                return 0
            if args.action == "label":
                trace = await trace_label(session, store, args.dataset, args.version, args.item_id)
                print(json.dumps(trace, indent=2))
                return 0
            if args.action == "verify":
                report = await verify_campaign(session, store, args.campaign_id)
                if report.ok:
                    print(
                        f"ok: {report.entries} entries, {report.anchors} anchors; the chain "
                        f"of {args.campaign_id} is intact"
                    )
                    return 0
                print(f"BROKEN: {report.first_problem}")
                for problem in report.problems[1:]:
                    print(f"  also: {problem}")
                return 1
            client = await _temporal_or_none(settings)
            entries, histories = await export_campaign(session, client, store, args.campaign_id)
            args.to.mkdir(parents=True, exist_ok=True)
            (args.to / "audit.jsonl").write_text("".join(jsonl(entries)))
            (args.to / "histories.jsonl").write_text("".join(jsonl(histories)))
            print(
                f"wrote {len(entries)} audit entries and {len(histories)} workflow histories "
                f"to {args.to}"
            )
            return 0
    except QuorumError as exc:
        print(f"quorum audit: {exc.message}", file=sys.stderr)
        return 2


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="quorum audit", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    item = sub.add_parser("item", help="an item's full timeline")
    item.add_argument("item_id")
    label = sub.add_parser("label", help="trace a published label to its annotators")
    label.add_argument("dataset")
    label.add_argument("version", type=int)
    label.add_argument("item_id")
    verify = sub.add_parser("verify", help="check the chain, anchors and archived histories")
    verify.add_argument("campaign_id")
    export = sub.add_parser("export", help="JSON Lines for outside auditors")
    export.add_argument("campaign_id")
    export.add_argument("--to", type=Path, required=True)
    return parser


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
