"""CampaignWorkflow: a sliding window of ItemWorkflows, then publication.

The campaign never holds more than ``window`` items in flight. Item workflows are started in
batches by an activity (cheaper in history than child workflows: one activity per batch instead
of three events per child), and each item reports back with an ``item_finished`` signal once its
consensus is committed. The ordinals of a batch enter ``in_flight`` *before* the batch starts,
so a fast item's signal is never mistaken for a stranger's. Counts only change when an ordinal
leaves ``in_flight``, so a repeated signal is never counted twice.

History stays bounded: when the server suggests it, the campaign continues as new with its whole
state in one ``CampaignState`` (at most ``window`` ordinals), after its handlers have finished.

A campaign with a reliability model (gold items, rules, adaptive redundancy) refits it every
``refit_every`` finished items and soon after a scored gold answer (``quality_evidence``
signal, at most once per ``MIN_REFIT_GAP``, or per ``REFIT_DUTY`` times the last refit's
duration when that is longer), and once more when the last image is done.
When the rules block someone and re-open items they answered, or the adaptive re-check
re-opens images the refit put below their target, those ordinals go back in flight with a
higher ``attempt`` (a finish signal from an older run is then ignored) and are restarted by an
activity; the campaign publishes only after a final refit that re-opens nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.campaign_activities import CampaignActivities
    from activities.reliability_activities import ReliabilityActivities
    from schemas.workflow_io import (
        SIGNAL_ITEM_FINISHED,
        SIGNAL_QUALITY_EVIDENCE,
        CampaignInput,
        CampaignProgress,
        CampaignResult,
        CampaignState,
        CampaignStatusInput,
        ItemFinished,
        OpenItemsInput,
        PublishInput,
        QualityEvidence,
        ReconcileInput,
        RestartItemsInput,
    )

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
# Without signals for this long, ask the database which in-flight items are done: a safety net
# for a completion signal that never arrived.
RECONCILE_EVERY = timedelta(minutes=10)
MAX_BATCH = 200
MIN_REFIT_GAP = timedelta(seconds=1)
FINAL_REFIT_PATCH = "final-refit"
"""Histories from before the final refit replay without it."""
REFIT_DUTY = 10
"""Refits that gold answers trigger come at least this many times the last refit's duration
apart (and at least MIN_REFIT_GAP): a refit reads every answer of the campaign, so on a large
campaign back-to-back refits would keep the database busy; this caps them near a tenth of it."""
REFIT_GAP_PATCH = "refit-gap-from-duration"
"""Histories from before the gap followed the refit's duration replay with MIN_REFIT_GAP."""
EVIDENCE_WAKES_PATCH = "evidence-wakes"
"""Histories from before gold evidence woke the campaign's wait replay without the wake."""


def refit_gap(last_refit_took: timedelta) -> timedelta:
    """How long gold answers wait after a refit before they trigger the next one."""
    return max(MIN_REFIT_GAP, last_refit_took * REFIT_DUTY)


@workflow.defn
class CampaignWorkflow:
    @workflow.init
    def __init__(self, input: CampaignInput) -> None:
        self._campaign_id = input.campaign_id
        self._state: CampaignState | None = input.state
        self._in_flight: set[int] = set(input.state.in_flight) if input.state else set()
        self._phase: Literal["labeling", "publishing", "done"] = "labeling"
        self._refit_every: int | None = None
        self._evidence = False  # a gold answer was scored since the last fit
        self._last_refit: datetime | None = None
        self._refit_gap = MIN_REFIT_GAP  # see REFIT_DUTY
        self._wake_on_evidence = False  # set for each wait, see run

    @workflow.signal(name=SIGNAL_ITEM_FINISHED)
    def item_finished(self, message: ItemFinished) -> None:
        self._finish(message.ordinal, message.outcome, message.attempt)

    @workflow.signal(name=SIGNAL_QUALITY_EVIDENCE)
    def quality_evidence(self, message: QualityEvidence) -> None:
        self._evidence = True

    def _finish(self, ordinal: int, outcome: str, attempt: int = 0) -> None:
        if self._state is None or ordinal not in self._in_flight:
            return
        if attempt < self._state.attempts.get(ordinal, 0):
            return  # a run from before the item was re-opened
        self._in_flight.discard(ordinal)
        self._state.counts.add(outcome)  # type: ignore[arg-type]
        self._state.finished_since_refit += 1

    def _final_refit_due(self, state: CampaignState) -> bool:
        """A campaign with a reliability model refits once more when its last image is done,
        unless nothing has finished since its last fit (so the loop ends)."""
        return (
            self._refit_every is not None
            and state.finished_since_refit > 0
            and workflow.patched(FINAL_REFIT_PATCH)
        )

    def _refit_due(self) -> bool:
        if self._refit_every is None or self._state is None:
            return False
        if self._state.finished_since_refit >= self._refit_every:
            return True
        return self._evidence and (
            self._last_refit is None or workflow.now() - self._last_refit >= self._refit_gap
        )

    @workflow.query
    def progress(self) -> CampaignProgress | None:
        if self._state is None:
            return None
        return CampaignProgress(
            total=self._state.total,
            started=self._state.next_ordinal,
            in_flight=len(self._in_flight),
            counts=self._state.counts,
            generation=self._state.generation,
            phase=self._phase,
        )

    def _refill_batch(self, state: CampaignState) -> int:
        """How many items to start now: wait until a quarter of the window is free, so a busy
        campaign starts items in batches rather than one activity per finished item."""
        free = state.window - len(self._in_flight)
        remaining = state.total - state.next_ordinal
        if remaining <= 0 or free <= 0:
            return 0
        threshold = max(1, state.window // 4)
        if free >= threshold or free >= remaining or not self._in_flight:
            return min(free, remaining, MAX_BATCH)
        return 0

    def _wait_timeout(self) -> timedelta:
        """Wake for the reconciliation, or when a pending gold answer's refit gap has passed."""
        if self._evidence and self._last_refit is not None and self._refit_every is not None:
            gap = self._refit_gap - (workflow.now() - self._last_refit)
            return max(min(gap, RECONCILE_EVERY), timedelta(milliseconds=100))
        return RECONCILE_EVERY

    async def _refit(self, campaign_id: str, state: CampaignState) -> None:
        self._evidence = False
        state.finished_since_refit = 0
        self._last_refit = workflow.now()
        result = await workflow.execute_activity_method(
            ReliabilityActivities.refit_reliability,
            campaign_id,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RETRY,
        )
        if workflow.patched(REFIT_GAP_PATCH):
            self._refit_gap = refit_gap(workflow.now() - self._last_refit)
        for reopened in result.reopened:
            if reopened.ordinal >= state.next_ordinal:
                continue  # never started: nothing to undo
            if reopened.ordinal not in self._in_flight:
                state.counts.add(reopened.previous, -1)  # counted as finished: not any more
            state.attempts[reopened.ordinal] = state.attempts.get(reopened.ordinal, 0) + 1
            self._in_flight.add(reopened.ordinal)
            state.to_restart.append(reopened.ordinal)

    @workflow.run
    async def run(self, input: CampaignInput) -> CampaignResult:
        if self._state is None:
            plan = await workflow.execute_activity_method(
                CampaignActivities.load_plan,
                input.campaign_id,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
            )
            self._state = CampaignState(total=plan.total, window=plan.window)
            self._refit_every = plan.refit_every
        else:
            self._refit_every = self._state.refit_every
        state = self._state
        state.refit_every = self._refit_every

        while True:
            if state.next_ordinal >= state.total and not self._in_flight:
                if not self._final_refit_due(state):
                    break
                # Every image is done: one more refit on all the answers, whose rules and
                # re-check may re-open images (they go back in flight, and the loop goes on).
                await self._refit(input.campaign_id, state)
                continue
            if self._refit_due():
                await self._refit(input.campaign_id, state)
                continue
            if state.to_restart:
                restart, state.to_restart = sorted(state.to_restart), []
                await workflow.execute_activity_method(
                    ReliabilityActivities.restart_items,
                    RestartItemsInput(
                        campaign_id=input.campaign_id,
                        ordinals=restart,
                        attempts={o: state.attempts[o] for o in restart},
                    ),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=RETRY,
                )
                continue
            batch = self._refill_batch(state)
            if batch:
                first = state.next_ordinal
                self._in_flight.update(range(first, first + batch))
                state.next_ordinal += batch
                await workflow.execute_activity_method(
                    CampaignActivities.open_items,
                    OpenItemsInput(campaign_id=input.campaign_id, first_ordinal=first, count=batch),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=RETRY,
                )
                continue

            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.in_flight = sorted(self._in_flight)
                state.generation += 1
                workflow.continue_as_new(CampaignInput(campaign_id=input.campaign_id, state=state))

            # Gold evidence that arrives during the wait, within MIN_REFIT_GAP of the last fit,
            # wakes it too, so that the wait is set again to end when the gap has passed
            # (before this patch such evidence waited for the next wake, up to
            # RECONCILE_EVERY, and a blocked annotator's answers kept counting meanwhile).
            self._wake_on_evidence = not self._evidence and workflow.patched(EVIDENCE_WAKES_PATCH)
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._refill_batch(state) > 0
                        or not self._in_flight
                        or workflow.info().is_continue_as_new_suggested()
                        or self._refit_due()
                        or (self._wake_on_evidence and self._evidence)
                    ),
                    timeout=self._wait_timeout(),
                )
            except TimeoutError:
                if self._refit_due():
                    continue
                done = await workflow.execute_activity_method(
                    CampaignActivities.reconcile_in_flight,
                    ReconcileInput(campaign_id=input.campaign_id, ordinals=sorted(self._in_flight)),
                    start_to_close_timeout=timedelta(seconds=120),
                    retry_policy=RETRY,
                )
                for item in done.finished:
                    self._finish(item.ordinal, item.outcome)

        self._phase = "publishing"
        await workflow.execute_activity_method(
            CampaignActivities.set_status,
            CampaignStatusInput(campaign_id=input.campaign_id, status="publishing"),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        published = await workflow.execute_activity_method(
            CampaignActivities.publish,
            # One final publication per campaign: a retried activity returns the same version.
            PublishInput(
                campaign_id=input.campaign_id,
                publish_id=f"{input.campaign_id}.final",
            ),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
        self._phase = "done"
        return CampaignResult(
            campaign_id=input.campaign_id,
            counts=state.counts,
            dataset=published.dataset,
            version=published.version,
            manifest_uri=published.manifest_uri,
            generations=state.generation,
        )
