"""``quorum consensus``: consensus per task from answers in a file, for every annotation type.

    quorum consensus --answers answers.csv --out labels.csv [--method NAME] [--truth truth.csv]
    quorum consensus --answers answers.jsonl --ontology spec.yaml --out consensus.jsonl
    python -m cli.consensus ...

Two input formats, chosen by the extension of ``--answers`` (``.csv``; ``.jsonl`` or
``.ndjson``) or by ``--format csv|jsonl``.

CSV: classification over a whole table. The answers file needs a header naming the columns
``task``, ``worker`` and ``label`` (in any order; other columns are ignored). Labels are
strings: the distinct labels are sorted and numbered, and the output keeps the original
strings. Every row counts, so a worker who answered a task twice votes twice. The output has
one row per task, ``task,label,confidence``, sorted by task, where confidence is the method's
probability of the chosen label. ``--truth`` (a ``task,label`` CSV) prints the accuracy over the
tasks that have a truth and at least one answer.

JSON Lines: any ontology (tags, boxes, polygons, polylines, keypoints, masks), one task at a
time, with the same agreement and consensus as a campaign (`services.consensus.assess`). Each
line is one worker's answer to one task, in the response schema of `schemas.annotations`::

    {"task": "img-1", "worker": "ann", "objects": [{"type": "box", "label": "car",
     "x": 10, "y": 20, "w": 50, "h": 30}], "image_size": [640, 480]}

``image_size`` (width, height) is optional; with it, coordinates are checked against the image
and polygon votes are clipped to it (masks need it to be checked against their size). Other
keys are ignored. ``--ontology`` names a campaign spec or a bare ontology (YAML or JSON). Each
answer is validated against the ontology as the API would, and a worker answers a task at most
once. The output has one line per task, sorted by task::

    {"task": "img-1", "objects": [... consensus objects with "confidence" and "support" ...],
     "agreement": 0.91, "confidence": 0.95}

where ``support`` lists the workers whose objects back each consensus object.

Exit status: 0 on success, 2 with a message saying what to fix when an input is unusable (for
JSON Lines, naming the line and the field).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.ontology import Ontology

# numpy and quality are imported when the command runs, not when `quorum` builds its parser:
# `import quality` takes about a second (scipy), which every other subcommand would pay.

__all__ = ["add_arguments", "main", "run", "run_consensus"]

DESCRIPTION = (
    "Infer one label per task from a task,worker,label CSV and write task,label,confidence; or "
    "the consensus objects of each task from JSON Lines answers in the response schema (boxes, "
    "polygons, ..., with --ontology) and write JSON Lines."
)
METHOD_HELP = (
    "consensus method: dawid_skene (Dawid-Skene with priors, the default), dawid_skene_mle "
    "(plain Dawid-Skene) or majority_vote"
)
ANSWER_COLUMNS = ("task", "worker", "label")
TRUTH_COLUMNS = ("task", "label")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_ERRORS = 20
"""At most this many problems are listed for one JSON Lines file (then a count of the rest)."""


class InputError(Exception):
    """An input problem the person running the command can fix; printed without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser`` (used standalone and by ``quorum consensus``)."""
    parser.add_argument(
        "--answers",
        type=Path,
        required=True,
        help="a CSV with a task,worker,label header, or JSON Lines of task, worker, objects",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where to write task,label,confidence (CSV) or one JSON line per task (JSON Lines)",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="the answers' format (default: from the extension, .csv or .jsonl/.ndjson)",
    )
    parser.add_argument(
        "--method",
        metavar="NAME",
        help=METHOD_HELP + " (CSV only)",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        help="optional task,label CSV of known labels: print the accuracy (CSV only)",
    )
    parser.add_argument(
        "--ontology",
        type=Path,
        help="campaign spec or bare ontology, YAML or JSON (JSON Lines answers; required there)",
    )


def answers_format(path: Path, explicit: str | None) -> str:
    """``csv`` or ``jsonl``: ``explicit`` if given, else from the file's extension."""
    if explicit is not None:
        return explicit
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(
            f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
            "name the file .csv or .jsonl, or give --format csv or --format jsonl"
        ) from None


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
    if answers_format(args.answers, args.format) == "jsonl":
        return _run_jsonl(args)
    if args.ontology is not None:
        raise InputError(
            "--ontology applies to JSON Lines answers; a CSV is classified by its label strings"
        )
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


@dataclass(frozen=True)
class Answer:
    """One valid JSON line: a worker's answer (a response body) to a task."""

    line: int
    task: str
    worker: str
    body: dict[str, Any]
    image_size: tuple[int, int] | None


def load_ontology(path: Path) -> Ontology:
    """The ontology of a campaign spec (its ``ontology`` field) or of a bare ontology file."""
    import yaml
    from pydantic import ValidationError

    from schemas.campaign_spec import spec_errors
    from schemas.ontology import Ontology

    if not path.is_file():
        raise InputError(f"{path}: no such file (the --ontology spec)")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise InputError(f"{path}: not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a campaign spec or an ontology (a mapping of fields)")
    prefix = ""
    if "ontology" in data:  # a campaign spec: only its ontology matters here
        data, prefix = data["ontology"], "ontology."
    try:
        return Ontology.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{prefix}{e.field}: {e.message}" for e in spec_errors(exc))
        raise InputError(f"{path}: not a valid ontology: {problems}") from exc


def _image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (value[0], value[1])
    raise ValueError("must be [width, height], two positive integers")


def read_jsonl(path: Path, ontology: Ontology) -> list[Answer]:
    """Every line's answer, validated against ``ontology``; all problems at once, by line."""
    from pydantic import ValidationError

    from schemas.annotations import ResponseBody, validate_response
    from schemas.campaign_spec import spec_errors

    if not path.is_file():
        raise InputError(f"{path}: no such file (the answers JSON Lines)")
    problems: list[str] = []
    answers: list[Answer] = []
    seen: dict[tuple[str, str], int] = {}
    sizes: dict[str, tuple[int, tuple[int, int] | None]] = {}

    def problem(line: int, field: str | None, message: str) -> None:
        problems.append(f"line {line}" + (f", field {field}" if field else "") + f": {message}")

    try:
        with path.open(encoding="utf-8-sig") as handle:
            lines = list(enumerate(handle, start=1))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    for number, text in lines:
        if not text.strip():
            continue  # blank line
        try:
            record = json.loads(text)
        except ValueError as exc:
            problem(number, None, f"not valid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            problem(number, None, "expected a JSON object with task, worker and objects")
            continue
        ids: dict[str, str] = {}
        for name in ("task", "worker"):
            value = record.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)  # a numeric id, as a CSV would read it
            if not isinstance(value, str) or not value.strip():
                problem(number, name, "missing or empty; every line needs a task and a worker")
            else:
                ids[name] = value.strip()
        if "objects" not in record:
            problem(number, "objects", "missing; give the answer's objects (a list, maybe empty)")
            continue
        try:
            size = _image_size(record.get("image_size"))
        except ValueError as exc:
            problem(number, "image_size", str(exc))
            continue
        try:
            body = ResponseBody.model_validate({"objects": record["objects"]})
        except ValidationError as exc:
            for error in spec_errors(exc):
                problem(number, _without_union_tag(error.field), error.message)
            continue
        field_errors = validate_response(ontology, body, size)
        for error in field_errors:
            problem(number, error.field, error.message)
        if field_errors or len(ids) < 2:
            continue
        task, worker = ids["task"], ids["worker"]
        if (task, worker) in seen:
            problem(
                number,
                "worker",
                f"{worker!r} already answered task {task!r} on line {seen[task, worker]}; "
                "a worker answers a task once",
            )
            continue
        seen[task, worker] = number
        first = sizes.setdefault(task, (number, size))
        if first[1] != size:
            problem(
                number,
                "image_size",
                f"{_size_text(size)} differs from line {first[0]}'s {_size_text(first[1])} for "
                f"task {task!r}",
            )
            continue
        answers.append(Answer(number, task, worker, body.model_dump(mode="json"), size))
    if problems:
        shown = problems[:MAX_ERRORS]
        if len(problems) > MAX_ERRORS:
            shown.append(f"... and {len(problems) - MAX_ERRORS} more")
        raise InputError(
            f"{path}: {len(problems)} problem(s); nothing was written:\n  " + "\n  ".join(shown)
        )
    if not answers:
        raise InputError(f"{path}: no answers; there is nothing to aggregate")
    return answers


def _without_union_tag(field: str) -> str:
    """``objects.0.box.w`` -> ``objects.0.w``: pydantic names the union member it tried; the
    answer's own path (the one `validate_response` uses) does not have it."""
    from schemas.ontology import GEOMETRIES

    parts = field.split(".")
    tagged = len(parts) > 3 and parts[0] == "objects" and parts[1].isdigit()
    if tagged and parts[2] in GEOMETRIES:
        del parts[2]
    return ".".join(parts)


def _size_text(size: tuple[int, int] | None) -> str:
    return "no image_size" if size is None else f"[{size[0]}, {size[1]}]"


def consensus_lines(ontology: Ontology, answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """One output record per task, sorted by task: `services.consensus.assess` of its answers."""
    from db.models import Response
    from services.consensus import assess

    by_task: dict[str, list[Answer]] = {}
    for answer in answers:
        by_task.setdefault(answer.task, []).append(answer)
    records = []
    for task in sorted(by_task):
        group = by_task[task]
        # Unsaved rows, never added to a session: `assess` reads only id, annotator_id and
        # body. The worker is the response id too, so "support" names workers.
        rows = [Response(id=a.worker, annotator_id=a.worker, body=a.body) for a in group]
        try:
            result = assess(ontology, rows, group[0].image_size)
        except ValueError as exc:
            lines = ", ".join(str(a.line) for a in group)
            raise InputError(f"task {task!r} (lines {lines}): {exc}") from exc
        records.append(
            {
                "task": task,
                "objects": result.objects,
                "agreement": result.agreement,
                "confidence": result.confidence,
            }
        )
    return records


def _run_jsonl(args: argparse.Namespace) -> int:
    unused = [
        option
        for option, value in (("--method", args.method), ("--truth", args.truth))
        if value is not None
    ]
    if unused:
        raise InputError(
            f"{' and '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} to CSV "
            "answers (classification over a whole table); "
            "JSON Lines answers use the campaign's consensus per task"
        )
    if args.ontology is None:
        raise InputError(
            "--ontology is required with JSON Lines answers: a campaign spec or an ontology "
            "file that names the classes and how each is drawn"
        )
    ontology = load_ontology(args.ontology)
    answers = read_jsonl(args.answers, ontology)
    records = consensus_lines(ontology, answers)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise InputError(f"{args.out}: cannot write the output ({exc.strerror or exc})") from exc
    workers = {a.worker for a in answers}
    print(
        f"consensus: {len(records)} tasks, {len(answers)} answers, {len(workers)} workers, "
        f"{len(ontology.classes)} classes -> {args.out}"
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
