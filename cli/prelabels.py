"""``quorum prelabels``: a model's predictions for a campaign that is already stored.

    quorum prelabels import CAMPAIGN_ID FILE [--format coco|jsonl] [--model NAME]
                                             [--companion IMAGES_AND_CATEGORIES.json]

FILE is COCO (a dataset, or a results list) or JSON Lines, one image per line; the formats, the
matching of file names and the uncertainty rule are in services/prelabels.py. The format
defaults to the file's extension (.json: coco; .jsonl: jsonl). The import is all or nothing: a
file with errors prints one line per problem (``FILE: lines.3.objects.0.label: ...``), stores
nothing, and exits with status 2. The work order set at launch is not changed.

Also runs as ``python -m cli.prelabels import ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

from infra.settings import Settings, get_settings

PROG = "quorum prelabels"


def _model_name(text: str) -> str:
    from schemas.campaign_spec import SLUG  # the spec's rule for prelabels.model

    if not re.match(SLUG, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model name: lower-case letters, digits, '.', '_' and '-'"
        )
    return text


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="import predictions (COCO or JSON Lines) for a campaign")
    imp.add_argument("campaign_id")
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=["coco", "jsonl"], help="default: by the extension")
    imp.add_argument(
        "--model", type=_model_name, default="model", help="the model's name, for provenance"
    )
    imp.add_argument(
        "--companion", type=Path, help="for a bare COCO results list: its images and categories"
    )
    return parser


def _read(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_text(encoding="utf-8")


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import create_engine, create_sessionmaker
    from services.errors import QuorumError
    from services.prelabels import format_of, import_prelabels

    try:
        content = _read(args.file)
        companion = _read(args.companion) if args.companion else None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    engine = create_engine(settings.database_url)
    try:
        fmt = format_of(args.file.name, args.format, field_name="--format")
        async with create_sessionmaker(engine).begin() as session:
            result = await import_prelabels(
                session,
                args.campaign_id,
                content,
                fmt=fmt,
                model=args.model,
                companion=companion,
                actor=("operator", "cli"),
            )
    except QuorumError as exc:
        if not exc.errors:
            print(f"{PROG}: {exc.message}", file=sys.stderr)
        else:
            print(f"{args.file}: nothing was imported:", file=sys.stderr)
            for e in exc.errors:
                print(f"{args.file}: {e.field}: {e.message}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    print(f"{args.campaign_id}: {result.message}")
    return 0


def run_prelabels(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_import(args, settings))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_prelabels(args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
