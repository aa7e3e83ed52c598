"""ItemWorkflow: one image, from its first answer to its final consensus.

It waits for k responses from distinct annotators, has the agreement measured, and either
finalizes the majority or waits for an expert's decision. Responses and decisions arrive as
signals sent by the API after its database commit (a signal is stored even while every worker is
down). The API signals once the image has all the answers it wants, with every counted answer's
ID in the one signal (one wake-up per image instead of k; each answer's own time is in the audit
log). IDs are database rows, which are the idempotency keys: a repeat is ignored. Waits time out
periodically to reconcile with the database, which catches a signal lost between the API's commit
and its send, and answers that arrived while the image still wanted more.

With adaptive redundancy the item collects ``wanted`` answers (the campaign's minimum), and the
resolve activity may answer "more": the consensus is not confident enough, so the item asks for
one more annotator (up to the maximum, where it escalates instead). "more" also comes back when
an answer was voided because its annotator was blocked; a ``response_voided`` signal usually
says so first.

An image can lose every answer while it waits for an expert (all its annotators were blocked).
If the review then times out there is no majority to fall back on, and the image goes back to
collecting from scratch (``finalize_review`` answers "reopened"; patch ``reopen-unanswered``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.item_activities import ItemActivities
    from schemas.workflow_io import (
        SIGNAL_RESPONSE_SUBMITTED,
        SIGNAL_RESPONSE_VOIDED,
        SIGNAL_REVIEW_DECIDED,
        FinalizeReviewInput,
        ItemInput,
        ItemResult,
        ResolveItemInput,
        ResolveItemResult,
        ResponseRef,
        ResponseSubmitted,
        ResponseVoided,
        ReviewDecided,
    )

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
DB_ACTIVITY_TIMEOUT = timedelta(seconds=60)
# Items whose review timed out with every answer voided go back to collecting (see run); runs
# recorded before this patch took the (empty) majority instead.
REOPEN_UNANSWERED_PATCH = "reopen-unanswered"


@workflow.defn
class ItemWorkflow:
    @workflow.init
    def __init__(self, input: ItemInput) -> None:
        self._input = input
        # response_id -> annotator_id; at most one response per annotator counts.
        self._responses: dict[str, str] = {r.response_id: r.annotator_id for r in input.responses}
        self._review_id: str | None = input.review_id
        self._wanted = input.wanted or input.annotators_per_image
        self._voided: set[str] = set()

    @workflow.signal(name=SIGNAL_RESPONSE_SUBMITTED)
    def response_submitted(self, message: ResponseSubmitted) -> None:
        for ref in message.others:
            self._add_response(ref.response_id, ref.annotator_id)
        self._add_response(message.response_id, message.annotator_id)

    @workflow.signal(name=SIGNAL_RESPONSE_VOIDED)
    def response_voided(self, message: ResponseVoided) -> None:
        self._void(message.response_id)

    def _void(self, response_id: str) -> None:
        self._voided.add(response_id)
        self._responses.pop(response_id, None)

    @workflow.signal(name=SIGNAL_REVIEW_DECIDED)
    def review_decided(self, message: ReviewDecided) -> None:
        if self._review_id is None:
            self._review_id = message.review_id

    @workflow.query
    def response_count(self) -> int:
        return len(self._responses)

    def _add_response(self, response_id: str, annotator_id: str) -> None:
        if (
            response_id in self._responses
            or response_id in self._voided
            or annotator_id in self._responses.values()
        ):
            return
        if len(self._responses) < self._wanted:
            self._responses[response_id] = annotator_id

    def _enough_responses(self) -> bool:
        return len(self._responses) >= self._wanted

    def _continue_if_history_is_long(self, review_deadline: datetime | None) -> None:
        """A long wait (annotators are slow, experts are busy) keeps reconciling; keep the
        history small by continuing as new with everything this run has learned."""
        if workflow.info().is_continue_as_new_suggested():
            workflow.continue_as_new(
                self._input.model_copy(
                    update={
                        "responses": [
                            ResponseRef(response_id=r, annotator_id=a)
                            for r, a in sorted(self._responses.items())
                        ],
                        "review_deadline": review_deadline,
                        "review_id": self._review_id,
                        "wanted": self._wanted,
                    }
                )
            )

    def _next_reconcile(self, current: timedelta) -> timedelta:
        # Back off while nothing happens: a quiet item costs O(log) history, not O(time).
        return min(current * 2, timedelta(seconds=max(self._input.reconcile_seconds, 3600)))

    @workflow.run
    async def run(self, input: ItemInput) -> ItemResult:
        deadline = input.review_deadline
        while True:
            if deadline is None:
                resolved = await self._collect_and_resolve()
                if resolved.outcome == "agreed":
                    return ItemResult(
                        item_id=input.item_id,
                        outcome="agreed",
                        agreement=resolved.agreement,
                        response_count=len(self._responses),
                    )
                deadline = workflow.now() + timedelta(seconds=input.review_timeout_seconds)

            await self._await_review(deadline)
            final = await workflow.execute_activity_method(
                ItemActivities.finalize_review,
                FinalizeReviewInput(
                    item_id=input.item_id,
                    ordinal=input.ordinal,
                    review_id=self._review_id,
                    attempt=input.attempt,
                    reopen_unanswered=workflow.patched(REOPEN_UNANSWERED_PATCH),
                ),
                start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            if final.outcome != "reopened":
                return ItemResult(
                    item_id=input.item_id,
                    outcome=final.outcome,
                    agreement=final.agreement,
                    response_count=len(self._responses),
                )
            # No expert came and every answer was voided: the image starts over with new
            # annotators (anything still held here is stale: the database counted none).
            for response_id in list(self._responses):
                self._void(response_id)
            self._wanted = final.wanted or self._wanted
            deadline = None

    async def _collect_and_resolve(self) -> ResolveItemResult:
        """Collect answers and resolve, until the outcome is not "more"."""
        while True:
            await self._collect_responses()
            resolved = await workflow.execute_activity_method(
                ItemActivities.resolve_item,
                ResolveItemInput(
                    item_id=self._input.item_id,
                    ordinal=self._input.ordinal,
                    response_ids=sorted(self._responses),
                    attempt=self._input.attempt,
                ),
                start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            if resolved.outcome != "more":
                return resolved
            for response_id in resolved.voided:
                self._void(response_id)
            self._wanted = resolved.wanted or self._wanted

    async def _collect_responses(self) -> None:
        reconcile = timedelta(seconds=self._input.reconcile_seconds)
        while not self._enough_responses():
            try:
                await workflow.wait_condition(self._enough_responses, timeout=reconcile)
            except TimeoutError:
                refs = await workflow.execute_activity_method(
                    ItemActivities.list_responses,
                    self._input.item_id,
                    start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
                    retry_policy=ACTIVITY_RETRY,
                )
                for ref in refs:
                    self._add_response(ref.response_id, ref.annotator_id)
                reconcile = self._next_reconcile(reconcile)
                if not self._enough_responses():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._continue_if_history_is_long(None)

    async def _await_review(self, deadline: datetime) -> None:
        reconcile = timedelta(seconds=self._input.reconcile_seconds)
        while self._review_id is None and workflow.now() < deadline:
            wait = min(reconcile, deadline - workflow.now())
            try:
                await workflow.wait_condition(lambda: self._review_id is not None, timeout=wait)
            except TimeoutError:
                found = await workflow.execute_activity_method(
                    ItemActivities.find_review,
                    self._input.item_id,
                    start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
                    retry_policy=ACTIVITY_RETRY,
                )
                if found is not None and self._review_id is None:
                    self._review_id = found
                reconcile = self._next_reconcile(reconcile)
                if self._review_id is None:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._continue_if_history_is_long(deadline)
