"""The floor: the least Temporal work an image could cost. A workflow that starts, receives k
signals and completes, with no activity at all. The pipeline benchmark runs it side by side
with Quorum's real ItemWorkflow to show what the product adds on top of Temporal itself."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class FloorWorkflow:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    @workflow.signal
    def answer(self, key: str) -> None:
        self._seen.add(key)

    @workflow.run
    async def run(self, k: int) -> int:
        await workflow.wait_condition(lambda: len(self._seen) >= k)
        return len(self._seen)
