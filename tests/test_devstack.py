"""Integration tests for ``infra.devstack``: real Temporal, PostgreSQL and MinIO processes."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from infra.devstack import (
    DevStackError,
    MinioServer,
    PostgresServer,
    TemporalDevServer,
    free_port,
)

pytestmark = pytest.mark.integration


async def test_temporal_server_answers(temporal_server: TemporalDevServer) -> None:
    client = await Client.connect(temporal_server.address, namespace="default")
    assert await client.service_client.check_health()
    workflows = [wf async for wf in client.list_workflows()]
    assert isinstance(workflows, list)


async def test_temporal_restart_keeps_running_workflow(tmp_path: Path) -> None:
    server = TemporalDevServer(tmp_path, port=free_port(), headless=True)
    workflow_id = f"survives-restart-{uuid.uuid4()}"
    with server:
        client = await Client.connect(server.address)
        # Nobody polls this task queue, so the workflow stays RUNNING with no worker at all.
        await client.start_workflow(
            "NoSuchWorkflow", id=workflow_id, task_queue="nobody-polls-this-queue"
        )
        server.stop()
        assert not server.is_running()

        server.start()
        client = await Client.connect(server.address)
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.workflow_type == "NoSuchWorkflow"


async def test_postgres_accepts_connections(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


async def test_postgres_creates_databases(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("devstack_extra")
    assert url == postgres_server.url_for("devstack_extra")
    assert postgres_server.create_database("devstack_extra") == url  # idempotent
    conn = await asyncpg.connect(postgres_server.dsn("devstack_extra"))
    try:
        assert await conn.fetchval("select current_database()") == "devstack_extra"
    finally:
        await conn.close()


def test_minio_versioned_bucket_roundtrip(minio_server: MinioServer) -> None:
    minio_server.ensure_bucket("devstack-test")
    minio_server.ensure_bucket("devstack-test")  # idempotent
    s3 = minio_server.boto3_client()
    assert s3.get_bucket_versioning(Bucket="devstack-test")["Status"] == "Enabled"

    first = s3.put_object(Bucket="devstack-test", Key="a/b.txt", Body=b"one")
    second = s3.put_object(Bucket="devstack-test", Key="a/b.txt", Body=b"two")
    assert first["VersionId"] != second["VersionId"]
    assert s3.get_object(Bucket="devstack-test", Key="a/b.txt")["Body"].read() == b"two"
    old = s3.get_object(Bucket="devstack-test", Key="a/b.txt", VersionId=first["VersionId"])
    assert old["Body"].read() == b"one"


def test_start_reuses_a_server_started_by_someone_else(tmp_path: Path) -> None:
    port = free_port()
    with MinioServer(tmp_path, port=port) as first:
        # A second object for the same data dir, like a second `devstack up`, attaches.
        with MinioServer(tmp_path, port=port) as second:
            assert second.pid == first.pid
        # Leaving the second `with` must not stop a server it did not launch.
        assert first.is_running() and first.probe()
    assert not first.is_running()


def test_port_taken_by_another_process_is_reported(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = MinioServer(tmp_path, port=taken)
        with pytest.raises(DevStackError, match=rf"port {taken} .* already in use"):
            server.start()
        assert not server.is_running()


def test_server_exiting_during_startup_reports_its_log(tmp_path: Path) -> None:
    # A directory where the SQLite file should be makes the Temporal server exit at once.
    (tmp_path / "temporal.db").mkdir()
    server = TemporalDevServer(tmp_path, port=free_port(), headless=True)
    with pytest.raises(DevStackError) as caught:
        server.start()
    message = str(caught.value)
    assert "exited with status" in message
    assert "SQLite" in message  # the tail of the server's own log explains why
    assert not server.is_running()
