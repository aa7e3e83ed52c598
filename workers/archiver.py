"""Starting the deployment's ArchiveWorkflow (idempotent: every worker calls it)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from schemas.workflow_io import ArchiveInput, archiver_workflow_id
from workflows.archive_workflow import ArchiveWorkflow


async def ensure_archiver(
    client: Client, task_queue: str, interval_seconds: float = 30.0
) -> WorkflowHandle[ArchiveWorkflow, None]:
    return await client.start_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(task_queue=task_queue, interval_seconds=interval_seconds),
        id=archiver_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
