"""``quorum datasets``: list, show, diff, export, verify, deprecate and roll back dataset versions.

    quorum datasets list [DATASET] [--json]
    quorum datasets show DATASET VERSION
    quorum datasets diff DATASET FROM TO [--json] [--limit N]
    quorum datasets export DATASET VERSION --to DIR [--format coco,yolo,voc,jsonl] [--no-labels]
    quorum datasets verify DATASET VERSION
    quorum datasets deprecate DATASET VERSION --reason TEXT [--by NAME]
    quorum datasets rollback DATASET VERSION [--force]

VERSION is a number or ``latest``. The store is the one the settings name (``QUORUM_STORE__*``).
Exit status: 0 done, 1 ``verify`` found problems, 2 a mistake to fix (printed, with what to do).
Also runs as ``python -m cli.datasets ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infra.settings import Settings
from storage import (
    EXPORT_FORMATS,
    DatasetNotFound,
    ObjectStore,
    VersionDeprecated,
    VersionNotFound,
    deprecate_version,
    describe_datasets,
    describe_versions,
    diff_versions,
    download_version,
    latest_version,
    list_versions,
    open_store,
    parse_formats,
    rollback,
    show_version,
    verify_version,
)

PROG = "quorum datasets"


class DatasetsUsageError(Exception):
    """A mistake the person can fix: printed without a traceback, exit status 2."""


def _version_arg(text: str) -> int | str:
    if text == "latest":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a version: give a number (1, 2, ...) or 'latest'"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: versions start at 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Published dataset versions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="the datasets, or one dataset's versions")
    ls.add_argument("dataset", nargs="?")
    ls.add_argument("--json", action="store_true", help="print JSON")

    show = sub.add_parser("show", help="a version's manifest, deprecation and latest flag")
    show.add_argument("dataset")
    show.add_argument("version", type=_version_arg)

    diff = sub.add_parser("diff", help="items added, removed and changed between two versions")
    diff.add_argument("dataset")
    diff.add_argument("from_version", metavar="FROM", type=_version_arg)
    diff.add_argument("to_version", metavar="TO", type=_version_arg)
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.add_argument("--limit", type=int, default=50, help="items listed per kind (default 50)")

    export = sub.add_parser("export", help="write a version's labels and exports to a directory")
    export.add_argument("dataset")
    export.add_argument("version", type=_version_arg)
    export.add_argument("--to", required=True, type=Path, help="a new or empty directory")
    export.add_argument(
        "--format",
        default=",".join(EXPORT_FORMATS),
        help=f"comma-separated, from {','.join(EXPORT_FORMATS)} (default: all)",
    )
    export.add_argument("--no-labels", action="store_true", help="skip labels.jsonl")

    verify = sub.add_parser("verify", help="check every file's hash, size and counts")
    verify.add_argument("dataset")
    verify.add_argument("version", type=_version_arg)

    deprecate = sub.add_parser("deprecate", help="mark a version deprecated (it is kept)")
    deprecate.add_argument("dataset")
    deprecate.add_argument("version", type=_version_arg)
    deprecate.add_argument("--reason", required=True, help="why (shown with the version)")
    deprecate.add_argument("--by", default="cli", help="who (default: cli)")

    back = sub.add_parser("rollback", help="point latest at an earlier version")
    back.add_argument("dataset")
    back.add_argument("version", type=_version_arg)
    back.add_argument("--force", action="store_true", help="even if it is deprecated")
    return parser


def _resolve(store: ObjectStore, dataset: str, version: int | str) -> int:
    """The version number ``version`` names, checked to exist (errors say what does)."""
    versions = list_versions(store, dataset)
    if not versions:
        known = [d.name for d in describe_datasets(store)]
        raise DatasetNotFound(
            f"no dataset named {dataset!r} in {store.describe()} "
            f"(datasets: {', '.join(known) if known else 'none yet'})"
        )
    if isinstance(version, int):
        if version not in versions:
            raise VersionNotFound(
                f"dataset {dataset!r} has no version {version} "
                f"(versions: {', '.join(map(str, versions))})"
            )
        return version
    latest = latest_version(store, dataset)
    if latest is None:
        raise DatasetsUsageError(f"dataset {dataset!r} has no latest version yet; give a number")
    return latest


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _list(store: ObjectStore, args: argparse.Namespace) -> int:
    if args.dataset is None:
        datasets = describe_datasets(store)
        if args.json:
            _print_json([d.to_json() for d in datasets])
            return 0
        if not datasets:
            print(f"no datasets in {store.describe()}")
        for d in datasets:
            print(f"{d.name}\tversions: {', '.join(map(str, d.versions))}\tlatest: {d.latest}")
        return 0
    versions = describe_versions(store, args.dataset)
    if args.json:
        _print_json([v.to_json() for v in versions])
        return 0
    for v in versions:
        flags = []
        if v.latest:
            flags.append("latest")
        if v.deprecated:
            flags.append(f"deprecated: {v.deprecated.get('reason')}")
        print(
            f"{v.version}\t{v.created_at}\t{v.item_count} items\t"
            f"{','.join(v.campaigns)}\t{'; '.join(flags)}".rstrip()
        )
    return 0


def _diff(store: ObjectStore, args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise DatasetsUsageError("--limit must be 0 or more")
    a = _resolve(store, args.dataset, args.from_version)
    b = _resolve(store, args.dataset, args.to_version)
    diff = diff_versions(store, args.dataset, a, b)
    if args.json:
        _print_json(diff.to_json(limit=args.limit))
        return 0
    print(
        f"{args.dataset} {a} -> {b}: {len(diff.added)} added, {len(diff.removed)} removed, "
        f"{len(diff.changed)} changed"
    )
    counts = diff.field_counts()
    if counts:
        print("fields changed: " + ", ".join(f"{k} ({n})" for k, n in counts.items()))
    for item_id in diff.added[: args.limit]:
        print(f"+ {item_id}")
    for item_id in diff.removed[: args.limit]:
        print(f"- {item_id}")
    for change in diff.changed[: args.limit]:
        print(f"~ {change.item_id}")
        for name, field_change in change.fields.items():
            before = json.dumps(field_change.before, sort_keys=True)
            after = json.dumps(field_change.after, sort_keys=True)
            print(f"    {name}: {before} -> {after}")
    hidden = max(len(diff.added), len(diff.removed), len(diff.changed)) - args.limit
    if hidden > 0:
        print(f"(lists cut at --limit {args.limit}; --json --limit N for more)")
    return 0


def _export(store: ObjectStore, args: argparse.Namespace) -> int:
    try:
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise DatasetsUsageError(f"--format: {exc}") from None
    version = _resolve(store, args.dataset, args.version)
    try:
        result = download_version(
            store, args.dataset, version, args.to, formats, labels=not args.no_labels
        )
    except FileExistsError as exc:
        raise DatasetsUsageError(str(exc)) from None
    print(
        f"wrote {args.dataset} version {version} to {result.directory} ({len(result.files)} files)"
    )
    for fmt, meta in result.exports.items():
        skipped = sum(meta["skipped"].values())
        line = f"  {fmt}: {meta['exported']} of {meta['items']} items"
        if skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in meta["skipped"].items())
            line += f" (skipped: {reasons})"
        if meta["notes"]:
            line += " notes: " + ", ".join(f"{k} {n}" for k, n in meta["notes"].items())
        print(line)
    return 0


def _show(store: ObjectStore, args: argparse.Namespace) -> int:
    _print_json(show_version(store, args.dataset, _resolve(store, args.dataset, args.version)))
    return 0


def _verify(store: ObjectStore, args: argparse.Namespace) -> int:
    version = _resolve(store, args.dataset, args.version)
    problems = verify_version(store, args.dataset, version)
    for problem in problems:
        print(problem)
    print(
        f"{args.dataset} version {version}: "
        + ("ok, every file matches its hash" if not problems else f"{len(problems)} problem(s)")
    )
    return 0 if not problems else 1


def _deprecate(store: ObjectStore, args: argparse.Namespace) -> int:
    version = _resolve(store, args.dataset, args.version)
    try:
        marker = deprecate_version(store, args.dataset, version, args.reason, args.by)
    except ValueError as exc:
        raise DatasetsUsageError(str(exc)) from None
    if marker.created:
        print(f"{args.dataset} version {version} is deprecated ({marker.reason}); it is kept")
    else:
        print(
            f"{args.dataset} version {version} was already deprecated by {marker.by} at "
            f"{marker.at} ({marker.reason})"
        )
    if latest_version(store, args.dataset) == version:
        print(f"it is still latest: `{PROG} rollback {args.dataset} <version>` to move latest")
    return 0


def _rollback(store: ObjectStore, args: argparse.Namespace) -> int:
    version = _resolve(store, args.dataset, args.version)
    try:
        sequence = rollback(store, args.dataset, version, allow_deprecated=args.force)
    except VersionDeprecated as exc:
        raise DatasetsUsageError(str(exc)) from None
    print(f"{args.dataset}: latest is now version {version} (pointer sequence {sequence})")
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "diff": _diff,
    "export": _export,
    "verify": _verify,
    "deprecate": _deprecate,
    "rollback": _rollback,
}


def run_datasets(argv: list[str], settings: Settings) -> int:
    """Run ``quorum datasets`` with ``argv`` (the words after ``datasets``)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and what is wrong
        return int(exc.code or 0)
    try:
        store = open_store(settings.store, settings.s3, settings.home)
        code: int = _ACTIONS[args.action](store, args)
        return code
    except (DatasetNotFound, VersionNotFound, DatasetsUsageError) as exc:
        print(f"{PROG} {args.action}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a dataset name the store would refuse, and the like
        print(f"{PROG} {args.action}: {exc}", file=sys.stderr)
        return 2


def main() -> int:
    from infra.settings import get_settings

    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's message names the variable
        print(f"{PROG}: bad settings: {exc}", file=sys.stderr)
        return 2
    return run_datasets(sys.argv[1:], settings)


if __name__ == "__main__":
    sys.exit(main())
