"""Activities of a campaign's reliability model: refit it, apply its rules and re-check the
adaptive images it revised below their target; restart the items re-opened.

The campaign workflow calls ``refit_reliability`` every so many finished items and soon after a
gold answer is scored. What the rules did is announced after the commit: each voided answer's
item workflow gets a ``response_voided`` signal, and re-opened items come back to the campaign
in the result, which restarts them with ``restart_items``.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.campaign_activities import START_CONCURRENCY, first_wanted, item_input
from db.models import Campaign, Item, Response
from schemas.workflow_io import (
    SIGNAL_RESPONSE_VOIDED,
    RefitResult,
    ReopenedItem,
    ResponseRef,
    ResponseVoided,
    RestartItemsInput,
    item_workflow_id,
)
from services.redundancy import reopen_below_target
from services.reliability import apply_rules, refit


class ReliabilityActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn
    async def refit_reliability(self, campaign_id: str) -> RefitResult:
        # Two transactions: the fit only writes the estimates; the rules then lock what they
        # change in the order submissions do (see services.reliability).
        async with self._sessions.begin() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {campaign_id} is not in the database")
            estimates = await refit(session, campaign)
        async with self._sessions.begin() as session:
            campaign = await session.get(Campaign, campaign_id)
            assert campaign is not None
            outcome = await apply_rules(session, campaign, estimates)
        # Adaptive redundancy: images that stopped on estimates this fit has revised below the
        # target get one more annotator (after the rules, which may have re-opened some).
        async with self._sessions.begin() as session:
            campaign = await session.get(Campaign, campaign_id)
            assert campaign is not None
            below = await reopen_below_target(session, campaign, estimates)
        # After the commit: a lost signal is covered by the item's own reconciliation, which
        # reads only counted answers, and by the resolve activity, which re-checks every answer.
        await asyncio.gather(
            *(
                self._signal_void(campaign_id, ordinal, response_id)
                for ordinal, response_id in outcome.voided
            )
        )
        return RefitResult(
            annotators=len(estimates),
            judged=outcome.judged,
            reopened=[ReopenedItem(ordinal=o, previous=p) for o, p in [*outcome.reopened, *below]],
        )

    async def _signal_void(self, campaign_id: str, ordinal: int, response_id: str) -> None:
        try:
            await self._client.get_workflow_handle(item_workflow_id(campaign_id, ordinal)).signal(
                SIGNAL_RESPONSE_VOIDED, ResponseVoided(response_id=response_id)
            )
        except Exception:  # closed (re-opened items restart later) or gone: nothing to tell
            activity.logger.info("no running workflow for item %s to tell of a void", ordinal)

    @activity.defn
    async def restart_items(self, input: RestartItemsInput) -> int:
        """Start a new run of each re-opened item, with the answers that still count."""
        async with self._sessions() as session:
            campaign = await session.get(Campaign, input.campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {input.campaign_id} is not in the database")
            rows = (
                await session.execute(
                    select(
                        Item.ordinal,
                        Item.status,
                        Item.slots_wanted,
                        Response.id,
                        Response.annotator_id,
                    )
                    .outerjoin(
                        Response,
                        (Response.item_id == Item.id) & Response.voided_at.is_(None),
                    )
                    .where(Item.campaign_id == input.campaign_id, Item.ordinal.in_(input.ordinals))
                )
            ).all()
        counted: dict[int, list[ResponseRef]] = {o: [] for o in input.ordinals}
        wanted: dict[int, int] = {}
        settled: set[int] = set()  # decided again already: a retry must not start a third run
        for ordinal, status, slots_wanted, response_id, annotator_id in rows:
            wanted[ordinal] = slots_wanted
            if status in {"done", "review"}:
                settled.add(ordinal)
            if response_id is not None:
                counted[ordinal].append(
                    ResponseRef(response_id=response_id, annotator_id=annotator_id)
                )
        semaphore = asyncio.Semaphore(START_CONCURRENCY)
        task_queue = activity.info().task_queue

        async def start(ordinal: int) -> None:
            async with semaphore:
                await self._client.start_workflow(
                    "ItemWorkflow",
                    item_input(
                        campaign,
                        ordinal,
                        wanted=max(wanted.get(ordinal, 0), first_wanted(campaign) or 0) or None,
                        attempt=input.attempts.get(ordinal, 1),
                        responses=sorted(counted[ordinal], key=lambda r: r.response_id),
                    ),
                    id=item_workflow_id(input.campaign_id, ordinal),
                    task_queue=task_queue,
                    # The earlier run decided the item (it is closed, or closing): this run is its
                    # sequel, and an earlier run still open is stale by definition.
                    id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                )
                activity.heartbeat(ordinal)

        pending = [o for o in input.ordinals if o not in settled]
        await asyncio.gather(*(start(o) for o in pending))
        return len(pending)
