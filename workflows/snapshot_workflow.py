"""SnapshotWorkflow: publish what is final so far, while the campaign goes on.

Started by the API on an operator's request, under a deterministic ID per request, so a
repeated request (same request ID) publishes once. It runs the campaign's own publish activity:
the same records, provenance and exports, only of the items already final.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.campaign_activities import CampaignActivities
    from schemas.workflow_io import PublishInput, PublishResult


@workflow.defn
class SnapshotWorkflow:
    @workflow.run
    async def run(self, input: PublishInput) -> PublishResult:
        return await workflow.execute_activity_method(
            CampaignActivities.publish,
            input,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=60)),
        )
