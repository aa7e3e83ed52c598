"""The tables: campaigns, items, people, assignments, responses, reviews, consensus, versions.

One schema for PostgreSQL and SQLite. Invariants that protect annotators' work are constraints,
not just code: an annotator holds at most one assignment per item, a response is unique per
assignment and per (annotator, idempotency key), and an item has at most one review decision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import true as sa_true
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(
        String(16)
    )  # created, running, publishing, completed, failed
    annotators_per_image: Mapped[int]
    agreement_threshold: Mapped[float] = mapped_column(Float)
    lease_timeout_s: Mapped[float] = mapped_column(Float)
    review_timeout_s: Mapped[float] = mapped_column(Float)
    window: Mapped[int]
    item_count: Mapped[int]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Random, never shown to anyone: salts where each annotator's gold tasks fall and in what
    # order they come (services.gold). None for campaigns created before it existed.
    secret: Mapped[str | None] = mapped_column(String(64))
    published_version: Mapped[int | None]
    manifest_uri: Mapped[str | None] = mapped_column(Text)
    # Skills an annotator must all have to be given this campaign's images (set by operators).
    required_skills: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("campaign_id", "ordinal"),
        # The claim query walks open items of a campaign in order.
        Index("ix_items_claim", "campaign_id", "status", "ordinal"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"))
    ordinal: Mapped[int]
    uri: Mapped[str] = mapped_column(Text)
    # Pixel size, known at launch for local files (and manifests that give it), else read from
    # the image's header on its first claim. Bounds checks and exports need it.
    width: Mapped[int | None]
    height: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))  # pending, open, review, done; gold
    # Slots held by live leases or counted responses: kept in the same transaction as the
    # assignment changes, so the claim can test it on the locked item row.
    slots_taken: Mapped[int] = mapped_column(default=0)
    # How many annotators the item asks for now: k for a fixed campaign; for an adaptive one it
    # starts at the minimum and grows by one while the consensus is not confident enough.
    slots_wanted: Mapped[int] = mapped_column(default=0, server_default="0")
    # "image", or "gold": a honeypot with a known answer, mixed into queues, never published.
    kind: Mapped[str] = mapped_column(String(8), default="image", server_default="image")
    gold_answer: Mapped[dict[str, Any] | None]
    agreement: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[datetime | None]
    # When an adaptive image last asked for one more annotator (routing holds it for trusted
    # annotators for a while from then; see services.task_assignment).
    contested_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Annotator(Base):
    """A person of the workforce: an annotator or an expert reviewer."""

    __tablename__ = "annotators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # annotator, expert
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, blocked
    max_concurrent: Mapped[int] = mapped_column(default=1)
    skills: Mapped[list[Any]] = mapped_column(default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """One lease of one item to one annotator."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id"),
        Index("ix_assignments_leases", "campaign_id", "state", "lease_expires_at"),
        Index("ix_assignments_annotator_state", "annotator_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"))
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"))
    state: Mapped[str] = mapped_column(String(16))  # leased, submitted, expired, skipped
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("annotator_id", "idempotency_key"),
        UniqueConstraint("item_id", "annotator_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignments.id"), unique=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), index=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    body: Mapped[dict[str, Any]]
    late: Mapped[bool] = mapped_column(default=False)  # submitted after its lease expired
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    # On a gold item: how well this answer matches the known one (0..1), scored at submission.
    gold_score: Mapped[float | None] = mapped_column(Float)
    # Set when the annotator was blocked: the answer is kept for the record, never counted.
    voided_at: Mapped[datetime | None]
    void_reason: Mapped[str | None] = mapped_column(Text)


class AnnotatorProgress(Base):
    """How many answers an annotator gave in a campaign, and how many tasks they were leased:
    counters kept by the submit and the claim, so the task page's "answered" and the gold
    schedule are one row read instead of a count over everything they did (which grew with every
    answer: 50,000 rows per claim for a busy annotator)."""

    __tablename__ = "annotator_progress"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), primary_key=True)
    answered: Mapped[int] = mapped_column(default=0)
    leased: Mapped[int] = mapped_column(default=0, server_default="0")  # new leases, not renewals


class AnnotatorQuality(Base):
    """What a campaign has learned about one annotator (or one model that votes), and whether
    they may still work on it. Updated by the reliability activity and by gold answers."""

    __tablename__ = "annotator_quality"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    # An annotator's ID, or "model:<name>" for imported predictions counted as a voter.
    annotator_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, blocked, retraining
    gold_answers: Mapped[int] = mapped_column(default=0)
    gold_score_sum: Mapped[float] = mapped_column(Float, default=0.0)
    answers: Mapped[int] = mapped_column(default=0)  # answers the model was fitted on
    accuracy: Mapped[float | None] = mapped_column(Float)  # estimated, smoothed
    weight: Mapped[float | None] = mapped_column(Float)  # the annotator's vote weight
    # Single-label classes: the confusion matrix (rows = true class, in ontology order). The
    # row with annotator_id POPULATION holds the campaign's average annotator.
    confusion: Mapped[list[Any] | None]
    reason: Mapped[str | None] = mapped_column(Text)  # why the status last changed
    # False between a block decided at a gold answer (in the API's transaction) and the refit
    # that revokes the leases and voids the answers.
    settled: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Prelabel(Base):
    """A model's prediction for one item, imported for a campaign."""

    __tablename__ = "prelabels"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]]  # {"objects": [...]} in the response schema
    uncertainty: Mapped[float | None] = mapped_column(Float)  # 0 sure .. 1 unsure
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), unique=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"))
    decision: Mapped[str] = mapped_column(String(24))  # accept_response, accept_consensus, edit
    accepted_response_id: Mapped[str | None] = mapped_column(String(40))
    body: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consensus(Base):
    """The final label of an item, with its provenance."""

    __tablename__ = "consensus"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    body: Mapped[dict[str, Any]]
    method: Mapped[str] = mapped_column(String(24))  # majority_vote, review, review_timed_out
    confidence: Mapped[float] = mapped_column(Float)
    agreement: Mapped[float] = mapped_column(Float)
    response_ids: Mapped[list[Any]]
    annotator_ids: Mapped[list[Any]]
    review_id: Mapped[str | None] = mapped_column(String(40))
    reviewer_id: Mapped[str | None] = mapped_column(String(40))
    workflow_id: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(64))
    finalized_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    publish_id: Mapped[str] = mapped_column(String(200), unique=True)
    manifest_uri: Mapped[str] = mapped_column(Text)
    item_count: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskLink(Base):
    """A signed link issued to one person for one campaign (``kind`` campaign: their queue) or
    one image of it (``kind`` task). The token names this row, so it can be revoked."""

    __tablename__ = "task_links"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # campaign, task
    item_id: Mapped[str | None] = mapped_column(ForeignKey("items.id"))
    issued_by: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
