"""``quorum consensus``: one label per task from a ``task,worker,label`` CSV.

    quorum consensus --answers answers.csv --out labels.csv [--method NAME] [--truth truth.csv]
    python -m cli.consensus --answers answers.csv --out labels.csv ...

The answers file needs a header naming the columns ``task``, ``worker`` and ``label`` (in any
order; other columns are ignored). Labels are strings: the distinct labels are sorted and
numbered, and the output keeps the original strings. Every row counts, so a worker who answered
a task twice votes twice. The output has one row per task, ``task,label,confidence``, sorted by
task, where confidence is the method's probability of the chosen label. ``--truth`` (a
``task,label`` CSV) prints the accuracy over the tasks that have a truth and at least one answer.

Exit status: 0 on success, 2 with a message saying what to fix when an input is unusable.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

# numpy and quality are imported when the command runs, not when `quorum` builds its parser:
# `import quality` takes about a second (scipy), which every other subcommand would pay.

__all__ = ["add_arguments", "main", "run", "run_consensus"]

DESCRIPTION = (
    "Infer one label per task from a task,worker,label CSV and write task,label,confidence."
)
METHOD_HELP = (
    "consensus method: dawid_skene (Dawid-Skene with priors, the default), dawid_skene_mle "
    "(plain Dawid-Skene) or majority_vote"
)
ANSWER_COLUMNS = ("task", "worker", "label")
TRUTH_COLUMNS = ("task", "label")


class InputError(Exception):
    """An input problem the person running the command can fix; printed without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser`` (used standalone and by ``quorum consensus``)."""
    parser.add_argument(
        "--answers", type=Path, required=True, help="CSV with a task,worker,label header"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write task,label,confidence"
    )
    parser.add_argument(
        "--method",
        metavar="NAME",
        help=METHOD_HELP,
    )
    parser.add_argument(
        "--truth", type=Path, help="optional task,label CSV of known labels: print the accuracy"
    )


def _read_table(path: Path, columns: Sequence[str], what: str) -> list[tuple[str, ...]]:
    """The named columns of a CSV with a header, one tuple per data row."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (the {what} CSV)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(
                    f"{path}: the file is empty; it needs a header line {','.join(columns)} "
                    "and at least one row"
                )
            names = [name.strip() for name in header]
            missing = [name for name in columns if name not in names]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header line must name "
                    f"{', '.join(columns)} (found: {', '.join(names) or 'nothing'})"
                )
            positions = [names.index(name) for name in columns]
            rows: list[tuple[str, ...]] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) < len(names):
                    raise InputError(
                        f"{path}, line {reader.line_num}: expected {len(names)} fields, "
                        f"got {len(row)}"
                    )
                values = tuple(row[i].strip() for i in positions)
                empty = [name for name, value in zip(columns, values, strict=True) if not value]
                if empty:
                    raise InputError(
                        f"{path}, line {reader.line_num}: empty {', '.join(empty)}; every row "
                        f"needs a {', '.join(columns)}"
                    )
                rows.append(values)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: no rows after the header; there is nothing to aggregate")
    return rows


def run(args: argparse.Namespace, prog: str = "quorum consensus") -> int:
    """Run the command on arguments parsed by a parser set up with `add_arguments`.

    Returns the exit status: 0, or 2 after printing what to fix when an input is unusable.
    """
    try:
        return _run(args)
    except InputError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from quality.dawid_skene import DEFAULT_METHOD, make_aggregator

    method = args.method or DEFAULT_METHOD
    try:
        model = make_aggregator(method)
    except ValueError as exc:
        raise InputError(f"--method: {exc}") from exc
    answers = _read_table(args.answers, ANSWER_COLUMNS, "answers")
    truth = _read_table(args.truth, TRUTH_COLUMNS, "truth") if args.truth is not None else None

    tasks = np.array([row[0] for row in answers])
    workers = np.array([row[1] for row in answers])
    classes, codes = np.unique(np.array([row[2] for row in answers]), return_inverse=True)
    model.fit((tasks, workers, codes.reshape(-1)))
    predicted = model.predict()
    probabilities = model.predict_proba()
    confidence = probabilities[np.arange(len(predicted)), predicted]

    task_ids: list[str] = model.tasks_.tolist()
    labels: list[str] = classes[predicted].tolist()
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("task", "label", "confidence"))
            for task, label, p in zip(task_ids, labels, confidence.tolist(), strict=True):
                writer.writerow((task, label, f"{p:.6f}"))
    except OSError as exc:
        raise InputError(f"{args.out}: cannot write the output ({exc.strerror or exc})") from exc
    print(
        f"{method}: {len(task_ids)} tasks, {len(workers)} answers, "
        f"{len(model.workers_)} workers, {len(classes)} labels -> {args.out}"
    )

    if truth is not None:
        known = {row[0]: row[1] for row in truth}
        scored = [
            (label, known[task])
            for task, label in zip(task_ids, labels, strict=True)
            if task in known
        ]
        if not scored:
            raise InputError(
                f"{args.truth}: none of its {len(known)} tasks has an answer in {args.answers}; "
                "check that both files use the same task ids"
            )
        correct = sum(label == true for label, true in scored)
        print(
            f"accuracy {correct / len(scored):.4f} ({correct} of {len(scored)} tasks that have "
            f"a truth and an answer; {len(known) - len(scored)} truth tasks without answers)"
        )
    return 0


def run_consensus(argv: Sequence[str] | None = None, prog: str = "quorum consensus") -> int:
    """Parse ``argv`` and run the command; returns the exit status (2 for input errors)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv), prog)


def main() -> int:
    return run_consensus(sys.argv[1:], prog="python -m cli.consensus")


if __name__ == "__main__":
    sys.exit(main())
