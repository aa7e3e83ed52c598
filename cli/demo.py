"""``quorum demo``: a whole labeling campaign on the embedded stack, in about a minute.

It starts (or reuses) a local Temporal dev server, migrates the SQLite database, runs a worker
and the HTTP API in this process, draws synthetic shape images whose classes are known, and
lets simulated annotators and an expert label them through the real API. It then prints what
came out: agreement, how many images needed an expert, how accurate the consensus is against the
known truth (beside a plain majority vote of the same answers), and where the published dataset
version is.

The Temporal server is left running afterwards so the workflows can be inspected in its Web UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import Client

from api.app import create_app
from db.migrate import upgrade_database
from infra.devstack import DevStackError, TemporalDevServer, free_port, stack_dir
from infra.settings import Settings
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, archiver_workflow_id, campaign_workflow_id
from services.audit import HISTORY_PREFIX, ChainReport
from services.audit_views import read_only_session, verify_campaign
from simulation.crowd import (
    Oracle,
    SimulatedAnnotator,
    annotate_until_empty,
    register,
    review_until_done,
)
from simulation.images import generate_images
from storage import ObjectStore, list_versions, open_store, read_manifest, read_records
from workers.worker_process import running_worker

DATASET = "demo-shapes"
CLASSES = ("circle", "square", "triangle")
ANNOTATOR_ACCURACIES = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
ANNOTATORS_PER_IMAGE = 3
RESULT_TIMEOUT = 100.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class DemoError(Exception):
    """A failure the person running the demo can act on; printed without a traceback."""


class DemoFailed(Exception):
    """The demo broke for a reason that is not the person's to fix; printed, exit status 1."""


# --------------------------------------------------------------------------------------------
# Temporal: use what answers, or start the embedded dev server
# --------------------------------------------------------------------------------------------


@dataclass
class TemporalPlan:
    address: str
    started_here: bool  # launched by this demo run
    stack_server: bool  # the long-lived dev server under stack_dir() (`quorum dev down` stops it)
    remote: bool


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    return (parts.hostname or "localhost").lower(), parts.port or default_port


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ensure_temporal(settings: Settings) -> TemporalPlan:
    """Decide where Temporal is and start the embedded dev server if needed (blocking).

    * A non-local address is a real cluster: use it, start nothing.
    * A local address where something already answers: use it (the dev stack's server, one an
      earlier demo left running, or any other local server).
    * Otherwise start the dev server under ``stack_dir()/temporal`` on the configured ports,
      with its Web UI; it keeps running after the demo.
    """
    address = settings.temporal.address
    host, port = _host_port(address, 7233)
    if host not in LOCAL_HOSTS:
        return TemporalPlan(address, started_here=False, stack_server=False, remote=True)
    server = TemporalDevServer(
        stack_dir() / "temporal",
        port=port,
        ui_port=_host_port(settings.temporal.ui_url, 8233)[1],
        namespace=settings.temporal.namespace,
    )
    if _answers("127.0.0.1", port):
        return TemporalPlan(
            address, started_here=False, stack_server=server.is_running(), remote=False
        )
    server.start()  # reuses a server of the stack that is still booting
    return TemporalPlan(
        address, started_here=server.started_in is not None, stack_server=True, remote=False
    )


# --------------------------------------------------------------------------------------------
# The API, served for real
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _serve_api(settings: Settings) -> AsyncIterator[str]:
    """Serve the API with uvicorn on a free local port; yields its base URL once /health answers."""

    class _Server(uvicorn.Server):
        # Leave Ctrl-C to asyncio.run (it cancels the demo, which then shuts everything down)
        # instead of letting uvicorn swallow it and re-raise it later.
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    port = free_port()
    server = _Server(
        uvicorn.Config(
            create_app(settings=settings), host="127.0.0.1", port=port, log_level="warning"
        )
    )

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind its port
            raise DemoError(f"the API could not listen on 127.0.0.1:{port}") from exc

    task = asyncio.create_task(serve(), name="quorum-demo-api")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=2) as probe:
            deadline = time.monotonic() + 30
            while True:
                if task.done():
                    task.result()  # raises DemoError if uvicorn exited
                    raise DemoError("the API stopped during startup (see the log above)")
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/health")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise DemoError(f"the API did not answer on {url}/health within 30 s")
                await asyncio.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


# --------------------------------------------------------------------------------------------
# The simulated crowd
# --------------------------------------------------------------------------------------------


def _operator(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api.operator_token.get_secret_value()}"}


async def _labeling_open(http: httpx.AsyncClient, settings: Settings, campaign_id: str) -> bool:
    """True while some image still waits for annotators (pending or open)."""
    r = await http.get(f"/campaigns/{campaign_id}", headers=_operator(settings))
    r.raise_for_status()
    items = r.json()["items"]
    return bool(items["pending"] + items["open"])


async def _annotate(
    http: httpx.AsyncClient,
    settings: Settings,
    annotator: SimulatedAnnotator,
    campaign_id: str,
    oracle: Oracle,
    finished: asyncio.Event,
) -> int:
    """Answer until no image needs annotators any more.

    Every image needs 3 different people, so an annotator can find nothing to do while the
    others hold the last leases; it keeps coming back until the campaign says labeling is over.
    """
    answered = 0
    while not finished.is_set():
        answered += await annotate_until_empty(
            http, annotator, campaign_id, oracle, idle_rounds=20, idle_sleep=0.1
        )
        if not await _labeling_open(http, settings, campaign_id):
            break
    return answered


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class Accuracy:
    consensus_correct: int
    majority_correct: int
    total: int


def score_records(records: Sequence[Mapping[str, Any]], truth: Mapping[str, str]) -> Accuracy:
    """Consensus vs. truth, and a plain majority vote of each item's answers vs. truth.

    The majority vote takes the most frequent first label; a tie goes to the earliest answer
    (records list answers in submission order), as a vote without any review would.
    """
    consensus = majority = 0
    for record in records:
        expected = truth[record["item_id"]]
        consensus += record["labels"] == [expected]
        votes = Counter(a["labels"][0] for a in record["responses"] if a["labels"])
        majority += bool(votes) and votes.most_common(1)[0][0] == expected
    return Accuracy(consensus, majority, len(records))


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _local_path(uri: str) -> Path | None:
    parts = urllib.parse.urlsplit(uri)
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else None


def _say(message: str) -> None:
    print(f"demo: {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


async def run_demo(settings: Settings, *, images: int = 30, seed: int = 7) -> int:
    """Run the demo campaign; 0 on success, 2 on a problem the person can fix, 1 otherwise."""
    if images < 1:
        print("quorum demo: --images must be at least 1", file=sys.stderr)
        return 2
    try:
        return await _run(settings, images=images, seed=seed)
    except DevStackError as exc:
        print(
            f"quorum demo: the local Temporal server is not available.\n{exc}\n"
            "To run the demo's server on other ports, set e.g. "
            "QUORUM_TEMPORAL__ADDRESS=localhost:7243 QUORUM_TEMPORAL__UI_URL=http://localhost:8243",
            file=sys.stderr,
        )
        return 2
    except DemoError as exc:
        print(f"quorum demo: {exc}", file=sys.stderr)
        return 2
    except DemoFailed as exc:
        print(f"quorum demo: {exc}", file=sys.stderr)
        return 1


async def _run(settings: Settings, *, images: int, seed: int) -> int:
    started = time.monotonic()
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    task_queue = f"demo-{run_id}"
    settings = settings.model_copy(
        update={"temporal": settings.temporal.model_copy(update={"task_queue": task_queue})}
    )
    temporal = settings.temporal

    # 1. The stack: Temporal, the database, a worker and the API.
    plan = await asyncio.to_thread(_ensure_temporal, settings)
    if plan.remote:
        _say(f"using the Temporal cluster at {temporal.address}")
    elif not plan.started_here:
        _say(f"using the Temporal server already running at {temporal.address}")
    try:
        client = await asyncio.wait_for(connect(temporal), 30)
    except (RuntimeError, TimeoutError, OSError) as exc:
        todo = (
            "check that the cluster is reachable from here (and QUORUM_TEMPORAL__TLS / "
            "QUORUM_TEMPORAL__API_KEY), or unset QUORUM_TEMPORAL__ADDRESS to let the demo run "
            "its own local server"
            if plan.remote
            else f"whatever listens at {temporal.address} is not a working Temporal server: "
            "stop it, or set QUORUM_TEMPORAL__ADDRESS to a free local port"
        )
        raise DemoError(
            f"cannot reach Temporal at {temporal.address} ({exc}).\nWhat to do: {todo}."
        ) from exc
    try:
        await upgrade_database(settings.database_url)
    except Exception as exc:
        raise DemoError(
            f"cannot prepare the database {settings.database_url.split('@')[-1]}: {exc}\n"
            "What to do: check QUORUM_DATABASE__URL (unset, the demo uses SQLite under "
            f"{settings.home})."
        ) from exc
    store = open_store(settings.store, settings.s3, settings.home)

    # 2. Images with known classes.
    image_dir = (settings.home / "demo" / run_id / "images").absolute()
    labeled = await asyncio.to_thread(generate_images, image_dir, images, seed=seed)
    _say(f"drew {images} images with known shapes in {image_dir}")

    async with running_worker(settings, task_queue), _serve_api(settings) as api_url:
        _say(f"worker on task queue {task_queue}; API at {api_url}")
        async with httpx.AsyncClient(base_url=api_url, trust_env=False, timeout=30) as http:
            # 3. The crowd, and the campaign.
            operator_token = settings.api.operator_token.get_secret_value()
            crowd = []
            for n, skill in enumerate(ANNOTATOR_ACCURACIES, start=1):
                person = await register(http, operator_token, f"demo-annotator-{n}")
                crowd.append(
                    SimulatedAnnotator(
                        name=person["name"],
                        accuracy=skill,
                        token=person["token"],
                        id=person["id"],
                        rng=random.Random(seed + n),
                    )
                )
            expert = await register(http, operator_token, "demo-expert", role="expert")
            spec = {
                "name": DATASET,
                "dataset": DATASET,
                "images": {"directory": str(image_dir)},
                "ontology": {"classes": [{"name": c} for c in CLASSES]},
                "annotators_per_image": ANNOTATORS_PER_IMAGE,
                "agreement_threshold": 1.0,
                "lease_timeout": "60s",
                "review_timeout": "10m",
            }
            r = await http.post("/campaigns", json=spec, headers=_operator(settings))
            if r.status_code != 201:
                raise DemoError(f"the API refused the demo campaign ({r.status_code}): {r.text}")
            campaign_id: str = r.json()["id"]
            workflow_id = campaign_workflow_id(campaign_id)
            # Items are numbered in the order of the sorted file names: the generation order.
            truth = {f"{campaign_id}-{n}": image.label for n, image in enumerate(labeled)}
            # The simulated annotators see only their assignments; they look the truth up as
            # the operator, who knows which item each assignment leased.
            oracle = Oracle(operator_token, truth)
            _say(
                f"launched campaign {campaign_id}: {len(crowd)} annotators "
                f"(accuracy {min(ANNOTATOR_ACCURACIES)}-{max(ANNOTATOR_ACCURACIES)}), "
                f"{ANNOTATORS_PER_IMAGE} per image, 1 expert for disagreements"
            )
            labeling_started = time.monotonic()

            # 4.-5. Work until the campaign workflow returns its result.
            handle = client.get_workflow_handle(workflow_id, result_type=CampaignResult)
            finished = asyncio.Event()
            result_task = asyncio.create_task(asyncio.wait_for(handle.result(), RESULT_TIMEOUT))
            result_task.add_done_callback(lambda _: finished.set())
            workers = [
                asyncio.create_task(_annotate(http, settings, a, campaign_id, oracle, finished))
                for a in crowd
            ]
            workers.append(
                asyncio.create_task(
                    review_until_done(http, expert["token"], campaign_id, truth, stop=finished)
                )
            )
            try:
                done, _ = await asyncio.wait(
                    [result_task, *workers], return_when=asyncio.FIRST_EXCEPTION
                )
                for task in done:
                    if task is not result_task and task.exception() is not None:
                        raise DemoFailed(f"a simulated person failed: {task.exception()!r}")
                try:
                    result = result_task.result()
                except TimeoutError:
                    raise DemoFailed(
                        f"campaign {campaign_id} did not finish within {RESULT_TIMEOUT:.0f} s.\n"
                        f"Inspect its workflow history at {_workflow_link(settings, workflow_id)}"
                        f", or run `quorum campaign status {campaign_id}`."
                    ) from None
            finally:
                finished.set()
                for task in [result_task, *workers]:
                    task.cancel()
                await asyncio.gather(result_task, *workers, return_exceptions=True)
            labeling_time = time.monotonic() - labeling_started
            answered = sum(t.result() for t in workers[:-1])
            reviewed_by_expert = workers[-1].result()
            archived, chain = await _archive_and_verify(
                settings, client, store, task_queue, campaign_id, expected=images + 1
            )

    # 6. The report.
    manifest = read_manifest(store, result.dataset, result.version)
    records = list(read_records(store, result.dataset, result.version))
    accuracy = score_records(records, truth)
    agreement = manifest.get("agreement", {})
    counts = result.counts
    versions = list_versions(store, result.dataset)
    local = _local_path(result.manifest_uri)
    wall = time.monotonic() - started
    ui_host, ui_port = _host_port(temporal.ui_url, 8233)
    ui_up = _answers("127.0.0.1" if ui_host in LOCAL_HOSTS else ui_host, ui_port)

    total = accuracy.total or 1
    lines = [
        "",
        f"Quorum demo: campaign {campaign_id} finished",
        f"  images done             {counts.finished} of {images}",
        f"  answers                 {answered} from {len(crowd)} annotators, "
        f"{ANNOTATORS_PER_IMAGE} per image",
        f"  unanimous               {counts.agreed}",
        f"  sent to expert review   {counts.reviewed + counts.review_timed_out} "
        f"(decided {reviewed_by_expert}, timed out {counts.review_timed_out})",
        f"  mean item agreement     {_fmt(agreement.get('mean_item_agreement'))}",
        f"  Krippendorff's alpha    {_fmt(agreement.get('krippendorff_alpha_nominal'))}",
        f"  consensus accuracy      {accuracy.consensus_correct / total:.3f} "
        f"({accuracy.consensus_correct}/{accuracy.total} match the known shapes)",
        f"  majority-vote accuracy  {accuracy.majority_correct / total:.3f} "
        f"({accuracy.majority_correct}/{accuracy.total}; the same answers without review)",
        f"  wall time               {wall:.1f} s (labeling {labeling_time:.1f} s)",
        "",
        f"  dataset                 {result.dataset} version {result.version} "
        f"(versions kept: {', '.join(map(str, versions))})",
        f"  manifest                {result.manifest_uri}",
        "",
        f"  audit log               {chain.entries} entries, "
        + ("hash chain intact" if chain.ok else f"BROKEN: {chain.first_problem}"),
        f"  histories archived      {archived} workflow runs (write-once, replayable)",
        f"  audit                   quorum audit verify {campaign_id}",
        f"                          quorum audit item {campaign_id}-0",
    ]
    if local is not None:
        lines.append(f"  local path              {local}")
    lines += [
        f"  inspect                 quorum datasets show {result.dataset} {result.version}",
        f"                          quorum datasets verify {result.dataset} {result.version}",
        "",
        f"  Temporal Web UI         {temporal.ui_url}"
        + ("" if ui_up else "  (not answering: this Temporal server has no Web UI)"),
        f"  campaign workflow       {_workflow_link(settings, workflow_id)}",
    ]
    if plan.stack_server:
        lines.append(
            "  The Temporal server keeps running so you can browse every workflow's history; "
            "stop it with `quorum dev down`."
        )
    print("\n".join(lines), flush=True)
    return 0


async def _archive_and_verify(
    settings: Settings,
    client: Client,
    store: ObjectStore,
    task_queue: str,
    campaign_id: str,
    *,
    expected: int,
) -> tuple[int, ChainReport]:
    """Have the archiver keep this campaign's closed histories, then check the audit chain.
    The archiver belongs to this demo's task queue, so it is stopped afterwards."""
    archiver = client.get_workflow_handle(archiver_workflow_id(task_queue))
    prefix = f"{HISTORY_PREFIX}/campaign/{campaign_id}/"
    archived = 0
    for _ in range(40):
        await archiver.signal("archive_now")
        await asyncio.sleep(0.25)
        archived = len(await asyncio.to_thread(lambda: list(store.list(prefix))))
        if archived >= expected:
            break
    await archiver.terminate("the demo is over")
    async with read_only_session(settings.database_url) as session:
        report = await verify_campaign(session, store, campaign_id)
    return archived, report


def _workflow_link(settings: Settings, workflow_id: str) -> str:
    temporal = settings.temporal
    return (
        f"{temporal.ui_url.rstrip('/')}/namespaces/{urllib.parse.quote(temporal.namespace)}"
        f"/workflows/{urllib.parse.quote(workflow_id, safe='')}"
    )
