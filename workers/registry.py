"""The one list of workflows and activities, used by every worker, the tests and the replayer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.archive_activities import ArchiveActivities
from activities.campaign_activities import CampaignActivities
from activities.item_activities import ItemActivities
from activities.reliability_activities import ReliabilityActivities
from storage import ObjectStore
from workflows.archive_workflow import ArchiveWorkflow
from workflows.campaign_workflow import CampaignWorkflow
from workflows.item_workflow import ItemWorkflow
from workflows.snapshot_workflow import SnapshotWorkflow

WORKFLOWS: Sequence[type] = (CampaignWorkflow, ItemWorkflow, ArchiveWorkflow, SnapshotWorkflow)


def build_activities(
    sessions: async_sessionmaker[AsyncSession], client: Client, store: ObjectStore
) -> list[Callable[..., Any]]:
    items = ItemActivities(sessions, client)
    campaigns = CampaignActivities(sessions, client, store)
    archive = ArchiveActivities(sessions, client, store)
    reliability = ReliabilityActivities(sessions, client)
    return [
        archive.archive_round,
        items.list_responses,
        items.find_review,
        items.resolve_item,
        items.finalize_review,
        campaigns.load_plan,
        campaigns.open_items,
        campaigns.reconcile_in_flight,
        campaigns.set_status,
        campaigns.publish,
        reliability.refit_reliability,
        reliability.restart_items,
    ]
