"""Gold (honeypot) items: loading them with a campaign, mixing them into queues, scoring answers.

Gold items are ordinary ``items`` rows with ``kind = "gold"`` and a known answer. They have no
workflow and never get a consensus, so nothing publishes them. Their ordinals follow the
campaign's images (``item_count + i``): the campaign workflow only ever opens ordinals below
``item_count``.

Mixing: an annotator's tasks are cut into blocks of about ``1 / rate`` (5 at a rate of 0.2),
and each block holds exactly one gold task, spread evenly instead of in a burst. Where in its
block is drawn per annotator and block from the campaign's secret (random, never shown), so
that counting tasks ("every fifth is gold") tells them nothing; so is the order in which each
annotator gets the gold items. The annotator sees the same kind of task
either way: the task names its assignment, never its item (whose ordinal would give gold away).
Gold images should look like the campaign's (format, size). A campaign with gold serves S3 and
web images through the API by default (``images.serve``), so no address shows where one is
stored.

Scoring uses the agreement measure of each annotation type (``services.consensus.score``):
exact match for a single-label tag, object-level agreement (IoU, OKS, ...) for the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.annotations import ResponseBody, validate_response
from schemas.campaign_spec import CampaignSpec, FieldError, GoldItemSpec, spec_errors
from services.errors import InvalidInput
from services.image_sources import image_size

GOLD = "gold"


@dataclass(frozen=True)
class GoldRow:
    uri: str
    width: int | None
    height: int | None
    answer: dict[str, Any]


def _refuse(errors: list[FieldError]) -> InvalidInput:
    return InvalidInput(
        "the gold items have errors: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
        errors=errors,
    )


def _read_manifest(path: Path) -> list[GoldItemSpec]:
    if not path.is_file():
        raise _refuse([FieldError(field="gold.manifest", message=f"{path} is not a file")])
    items: list[GoldItemSpec] = []
    errors: list[FieldError] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            items.append(GoldItemSpec.model_validate(json.loads(line)))
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                errors += [
                    FieldError(field=f"gold.manifest line {n}: {e.field}", message=e.message)
                    for e in spec_errors(exc)
                ]
            else:
                errors.append(
                    FieldError(field=f"gold.manifest line {n}", message="not a JSON object")
                )
    if errors:
        raise _refuse(errors)
    if not items:
        raise _refuse([FieldError(field="gold.manifest", message="lists no gold items")])
    return items


def load_gold(spec: CampaignSpec, base_dir: Path | None) -> list[GoldRow]:
    """The campaign's gold items, each answer checked against the ontology; [] without gold."""
    if spec.gold is None:
        return []
    if spec.gold.items is not None:
        items, where = spec.gold.items, "gold.items"
    else:
        assert spec.gold.manifest is not None
        path = Path(spec.gold.manifest)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        items, where = _read_manifest(path), "gold.manifest item"
    rows: list[GoldRow] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        size = _local_size(item.uri)
        if item.uri.startswith("file://") and size is None:
            errors.append(FieldError(field=f"{where}.{i}.uri", message="not a readable image"))
            continue
        if size is None and item.width is not None and item.height is not None:
            size = (item.width, item.height)
        body = ResponseBody.model_validate(item.answer())
        for e in validate_response(spec.ontology, body, size):
            errors.append(FieldError(field=f"{where}.{i}.{e.field}", message=e.message))
        width, height = size or (None, None)
        rows.append(GoldRow(uri=item.uri, width=width, height=height, answer=item.answer()))
    if errors:
        raise _refuse(errors)
    return rows


def _local_size(uri: str) -> tuple[int, int] | None:
    if not uri.startswith("file://"):
        return None
    return image_size(Path(uri.removeprefix("file://")))


def gold_salt(campaign_id: str, secret: str | None, created_at: str, annotator_id: str) -> str:
    """What salts one annotator's gold schedule and order: the campaign's secret (campaigns
    from before it existed fall back to their creation time, as they started)."""
    return f"{campaign_id}/{secret or created_at}/{annotator_id}"


def next_gold(candidates: Iterable[str], salt: str) -> str | None:
    """Which of the gold items an annotator has not had comes next for them.

    Each annotator gets the campaign's gold items in an order of their own, drawn from the
    salt, so people comparing notes cannot say "the third gold task is the red car"."""
    return min(
        candidates,
        key=lambda item_id: hashlib.sha256(f"quorum-gold-order:{salt}:{item_id}".encode()).digest(),
        default=None,
    )


def gold_is_due(rate: float, tasks_before: int, salt: str = "") -> bool:
    """Whether an annotator's next task (they had ``tasks_before``) should be gold.

    Block ``k`` is tasks ``[floor(k / rate), floor((k + 1) / rate))``, at least 2 long as the
    rate is at most 0.5; its gold task is at an offset drawn from ``salt`` and ``k``. So each
    block has exactly one: of the first N tasks, ``floor(N * rate)`` or one more are gold.
    ``salt`` names the campaign and the annotator with something they cannot know."""
    if not 0 < rate <= 1:
        raise ValueError(f"a gold rate is in (0, 1], not {rate}")
    n = tasks_before

    def start(k: int) -> int:
        return math.floor(k / rate + 1e-9)

    block = math.floor(n * rate + 1e-9)
    while start(block + 1) <= n:  # float rounding at a block's edge
        block += 1
    while start(block) > n:
        block -= 1
    digest = hashlib.sha256(f"quorum-gold:{salt}:{block}".encode()).digest()
    offset = int.from_bytes(digest[:8], "big") % (start(block + 1) - start(block))
    return n == start(block) + offset
