"""Inputs, results and messages of the workflows and activities.

One typed model per input and result, so fields can be added without breaking running workflows.
Payloads carry IDs and counts, never images or full answers: those live in the database.
Signal names and workflow IDs are defined here so the API and activities can address workflows
without importing workflow code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

SIGNAL_RESPONSE_SUBMITTED = "response_submitted"
SIGNAL_REVIEW_DECIDED = "review_decided"
SIGNAL_ITEM_FINISHED = "item_finished"
SIGNAL_RESPONSE_VOIDED = "response_voided"
SIGNAL_QUALITY_EVIDENCE = "quality_evidence"
SIGNAL_ITEMS_REOPENED = "items_reopened"

ItemOutcome = Literal["agreed", "reviewed", "review_timed_out"]


def outcome_of(method: str) -> ItemOutcome:
    """The campaign's outcome of an item from its consensus method."""
    outcomes: dict[str, ItemOutcome] = {
        "majority_vote": "agreed",
        "consensus": "agreed",
        "adaptive": "agreed",
        "review": "reviewed",
    }
    return outcomes.get(method, "review_timed_out")


def campaign_workflow_id(campaign_id: str) -> str:
    return f"campaign/{campaign_id}"


def item_workflow_id(campaign_id: str, ordinal: int) -> str:
    return f"campaign/{campaign_id}/item/{ordinal}"


def item_id_for(campaign_id: str, ordinal: int) -> str:
    """Item IDs are derived from the campaign and the position, so every retry agrees on them."""
    return f"{campaign_id}-{ordinal}"


# --- messages from people (sent by the API) ---------------------------------------------------


class ResponseRef(BaseModel):
    response_id: str
    annotator_id: str


class ResponseSubmitted(BaseModel):
    """A response stored in the database. The response ID is the idempotency key.

    The API sends it once an image has all the answers it wants, not for each answer: ``others``
    are the image's other counted answers, oldest first, so one signal (not k) wakes the item.
    Histories recorded when each answer had its own signal carry no ``others``, and replay the
    same.
    """

    response_id: str
    annotator_id: str
    others: list[ResponseRef] = Field(default_factory=list)


class ReviewDecided(BaseModel):
    review_id: str


class ItemFinished(BaseModel):
    """Sent to the campaign when an item's consensus is final. Repeats are ignored by ordinal."""

    ordinal: int
    outcome: ItemOutcome
    attempt: int = 0  # how often the item was re-opened before this run: older runs are stale


class ResponseVoided(BaseModel):
    """A counted response no longer counts (its annotator was blocked)."""

    response_id: str


class QualityEvidence(BaseModel):
    """A gold answer was scored: the campaign may want to refit its reliability model."""

    annotator_id: str


class ReopenedItem(BaseModel):
    ordinal: int
    previous: ItemOutcome


# --- the item workflow --------------------------------------------------------------------------


class ItemInput(BaseModel):
    campaign_id: str
    item_id: str
    ordinal: int
    # Fixed k; with adaptive redundancy, the maximum (the item starts at ``wanted``).
    annotators_per_image: int
    wanted: int | None = None  # responses to collect before the first resolve (None: k)
    attempt: int = 0  # 0 for the first run; n after the item was re-opened n times
    # How often a waiting item reconciles with the database, in case a signal was lost between
    # the API's commit and its signal (e.g. the API crashed in between).
    reconcile_seconds: float
    review_timeout_seconds: float
    # State carried across continue-as-new (empty on the first run).
    responses: list[ResponseRef] = Field(default_factory=list)
    review_deadline: datetime | None = None
    review_id: str | None = None


class ItemResult(BaseModel):
    item_id: str
    outcome: ItemOutcome
    agreement: float
    response_count: int


class ResolveItemInput(BaseModel):
    item_id: str
    ordinal: int
    response_ids: list[str]
    attempt: int = 0


class ResolveItemResult(BaseModel):
    # more: not confident yet (adaptive) or an answer was voided: collect ``wanted`` answers
    outcome: Literal["agreed", "review", "more"]
    agreement: float
    wanted: int | None = None
    voided: list[str] = Field(default_factory=list)


class FinalizeReviewInput(BaseModel):
    item_id: str
    ordinal: int
    review_id: str | None  # None: the review timed out; the majority stands, flagged
    attempt: int = 0
    # Set by item workflows that can go back to collecting (patch "reopen-unanswered"): a
    # review that times out on an image with no counted answer left (every one was voided when
    # its annotator was blocked) re-opens the image instead of publishing an empty majority.
    reopen_unanswered: bool = False


class FinalizeReviewResult(BaseModel):
    # "reopened": no decision and no counted answer; the image collects ``wanted`` answers again
    outcome: ItemOutcome | Literal["reopened"]
    agreement: float
    wanted: int | None = None


# --- the campaign workflow ----------------------------------------------------------------------


class CampaignCounts(BaseModel):
    finished: int = 0
    agreed: int = 0
    reviewed: int = 0
    review_timed_out: int = 0

    def add(self, outcome: ItemOutcome, n: int = 1) -> None:
        self.finished += n
        if outcome == "agreed":
            self.agreed += n
        elif outcome == "reviewed":
            self.reviewed += n
        else:
            self.review_timed_out += n


class CampaignState(BaseModel):
    """Everything the campaign carries across continue-as-new."""

    total: int
    window: int
    next_ordinal: int = 0
    in_flight: list[int] = Field(default_factory=list)
    counts: CampaignCounts = Field(default_factory=CampaignCounts)
    generation: int = 0  # how many times this campaign continued as new
    # With a reliability model: re-open counts per ordinal, items waiting to restart, and the
    # finished items since the model's last fit.
    attempts: dict[int, int] = Field(default_factory=dict)
    to_restart: list[int] = Field(default_factory=list)
    finished_since_refit: int = 0
    refit_every: int | None = None


class CampaignInput(BaseModel):
    campaign_id: str
    state: CampaignState | None = None


class CampaignPlan(BaseModel):
    total: int
    window: int
    # Finished items between two fits of the reliability model; None: the campaign has none.
    refit_every: int | None = None


class RefitResult(BaseModel):
    annotators: int
    judged: list[str]
    reopened: list[ReopenedItem]


class RestartItemsInput(BaseModel):
    campaign_id: str
    ordinals: list[int]
    attempts: dict[int, int]


class CampaignResult(BaseModel):
    campaign_id: str
    counts: CampaignCounts
    dataset: str
    version: int
    manifest_uri: str
    generations: int


class CampaignProgress(BaseModel):
    """What the campaign reports to a query: enough for a status page."""

    total: int
    started: int
    in_flight: int
    counts: CampaignCounts
    generation: int
    phase: Literal["labeling", "publishing", "done"]


class OpenItemsInput(BaseModel):
    campaign_id: str
    first_ordinal: int
    count: int


class OpenItemsResult(BaseModel):
    running: int
    already_finished: int


class ReconcileInput(BaseModel):
    campaign_id: str
    ordinals: list[int]


class FinishedItem(BaseModel):
    ordinal: int
    outcome: ItemOutcome


class ReconcileResult(BaseModel):
    finished: list[FinishedItem]


class CampaignStatusInput(BaseModel):
    campaign_id: str
    status: Literal["running", "publishing", "completed", "failed"]


class PublishInput(BaseModel):
    campaign_id: str
    publish_id: str
    # A snapshot publishes what is final so far, during the campaign; it does not end it.
    snapshot: bool = False


def snapshot_workflow_id(campaign_id: str, request_id: str) -> str:
    return f"campaign/{campaign_id}/snapshot/{request_id}"


class PublishResult(BaseModel):
    dataset: str
    version: int
    manifest_uri: str
    item_count: int


# --- the archiver -------------------------------------------------------------------------------


def archiver_workflow_id(task_queue: str) -> str:
    """One archiver per deployment (a deployment is a task queue)."""
    return f"quorum/archiver/{task_queue}"


class ArchiveInput(BaseModel):
    task_queue: str
    # Closed workflows are exported when their close time is after this (ISO-8601, UTC).
    since: str = "1970-01-01T00:00:00Z"
    interval_seconds: float = 30.0
    rounds: int = 0  # rounds done in this run; the archiver continues as new every so often


class ArchiveRoundResult(BaseModel):
    exported: int
    already_kept: int
    next_since: str  # the checkpoint for the next round
    anchors: int
