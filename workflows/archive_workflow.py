"""ArchiveWorkflow: one per deployment, exporting closed histories and anchoring the audit log.

It runs forever: a round, then a durable sleep. Its checkpoint (the newest close time it has
exported) survives continue-as-new. Every worker starts it if it is not running, so there is
always exactly one (its workflow ID is fixed).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.archive_activities import ArchiveActivities
    from schemas.workflow_io import ArchiveInput, ArchiveRoundResult

ROUNDS_PER_RUN = 100


@workflow.defn
class ArchiveWorkflow:
    def __init__(self) -> None:
        self._last: ArchiveRoundResult | None = None
        self._wake = False

    @workflow.signal
    def archive_now(self) -> None:
        """Run a round at once (tests, and operators before an audit)."""
        self._wake = True

    @workflow.query
    def last_round(self) -> ArchiveRoundResult | None:
        return self._last

    @workflow.run
    async def run(self, input: ArchiveInput) -> None:
        since, rounds = input.since, input.rounds
        while rounds < ROUNDS_PER_RUN:
            self._wake = False
            self._last = await workflow.execute_activity_method(
                ArchiveActivities.archive_round,
                input.model_copy(update={"since": since}),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            since = self._last.next_since
            rounds += 1
            try:
                await workflow.wait_condition(
                    lambda: self._wake, timeout=timedelta(seconds=input.interval_seconds)
                )
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input.model_copy(update={"since": since, "rounds": 0}))
