"""``quorum datasets`` (run as a real process) and the dataset API router (over ASGI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import dataset_routes
from api.app import create_app
from api.context import AppContext
from infra.settings import ApiSettings, Settings, StoreSettings
from storage import (
    LocalObjectStore,
    ObjectStore,
    PublishRequest,
    S3ObjectStore,
    latest_version,
    publish_version,
    read_manifest,
)
from tests.storage.samples import ONTOLOGY, full_record, simple_records

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = "test-operator-token"
NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def publish_two(store: ObjectStore) -> None:
    """pets 1: 30 items; pets 2: items 0-2 removed, 3 relabeled, one added."""
    first = simple_records(30)
    second = [dict(r) for r in first[3:]]
    second[0]["labels"] = ["dog"]
    second.append(full_record("cmp_y-0"))
    for n, recs in enumerate((first, second), start=1):
        req = PublishRequest(
            dataset="pets",
            publish_id=f"pub-{n}",
            campaigns=("cmp_x",),
            created_by="test",
            records=recs,
            class_counts={},
            agreement={},
            extra={"campaign_name": "pets", "ontology": ONTOLOGY},
            shard_size=10,
        )
        publish_version(store, req, now=NOW)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "QUORUM_STORE__BACKEND": "local",
        "QUORUM_STORE__LOCAL_ROOT": str(root),
        "QUORUM_HOME": str(root.parent / "home"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.datasets", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    publish_two(LocalObjectStore(root))
    return root


def test_cli_lists_shows_and_diffs(store_root: Path) -> None:
    listed = cli(store_root, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["pets\tversions: 1, 2\tlatest: 2"]

    versions = cli(store_root, "list", "pets", "--json")
    assert [(v["version"], v["item_count"], v["latest"]) for v in json.loads(versions.stdout)] == [
        (1, 30, False),
        (2, 28, True),
    ]

    shown = cli(store_root, "show", "pets", "latest")
    assert shown.returncode == 0, shown.stderr
    manifest = json.loads(shown.stdout)
    assert (manifest["version"], manifest["latest"], manifest["deprecated"]) == (2, True, None)
    assert manifest["format"] == "quorum.dataset/v2"

    diff = cli(store_root, "diff", "pets", "1", "2")
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0] == "pets 1 -> 2: 1 added, 3 removed, 1 changed"
    assert "+ cmp_y-0" in lines
    assert "- cmp_x-000000" in lines
    assert "~ cmp_x-000003" in lines
    assert '    labels: ["cat"] -> ["dog"]' in lines

    as_json = json.loads(cli(store_root, "diff", "pets", "1", "2", "--json").stdout)
    assert as_json["counts"] == {"added": 1, "removed": 3, "changed": 1}
    assert as_json["changed"][0]["fields"]["labels"] == {"before": ["cat"], "after": ["dog"]}


def test_cli_exports_and_verifies(store_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    exported = cli(store_root, "export", "pets", "2", "--to", str(out), "--format", "coco,voc")
    assert exported.returncode == 0, exported.stderr
    assert "coco: 28 of 28 items" in exported.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "coco",
        "exports.json",
        "labels.jsonl",
        "manifest.json",
        "voc",
    ]
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 28

    verified = cli(store_root, "verify", "pets", "2")
    assert (verified.returncode, verified.stdout.splitlines()[-1]) == (
        0,
        "pets version 2: ok, every file matches its hash",
    )
    victim = next(
        f for f in read_manifest(LocalObjectStore(store_root), "pets", 2)["files"]
        if f["role"] == "labels"
    )  # fmt: skip
    (store_root / victim["key"]).write_bytes(b"tampered\n")
    broken = cli(store_root, "verify", "pets", "2")
    assert broken.returncode == 1
    assert victim["key"] in broken.stdout
    assert "problem(s)" in broken.stdout


def test_cli_deprecates_and_rolls_back(store_root: Path) -> None:
    deprecated = cli(store_root, "deprecate", "pets", "2", "--reason", "wrong ontology")
    assert deprecated.returncode == 0, deprecated.stderr
    assert "deprecated (wrong ontology); it is kept" in deprecated.stdout
    assert "still latest" in deprecated.stdout

    refused = cli(store_root, "rollback", "pets", "2")
    assert refused.returncode == 2
    assert "deprecated" in refused.stderr and "--force" in refused.stderr

    back = cli(store_root, "rollback", "pets", "1")
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == "pets: latest is now version 1 (pointer sequence 3)"
    assert latest_version(LocalObjectStore(store_root), "pets") == 1
    listed = cli(store_root, "list", "pets").stdout.splitlines()
    assert listed[0].endswith("latest")
    assert listed[1].endswith("deprecated: wrong ontology")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope", "1"], "no dataset named 'nope'"),
        (["show", "pets", "7"], "has no version 7 (versions: 1, 2)"),
        (["show", "pets", "seven"], "give a number (1, 2, ...) or 'latest'"),
        (["diff", "pets", "1"], "the following arguments are required: TO"),
        (["export", "pets", "1", "--to", "{tmp}", "--format", "csv"], "unknown export format"),
        (["export", "pets", "1", "--to", "{busy}"], "is not an empty directory"),
        (["export", "pets", "1"], "--to"),
        (["deprecate", "pets", "1"], "--reason"),
        (["deprecate", "pets", "1", "--reason", " "], "say why"),
        (["list", "Bad/Name"], "invalid name"),
    ],
    ids=["unknown-dataset", "unknown-version", "bad-version", "diff-needs-two", "bad-format",
         "busy-dir", "export-needs-to", "deprecate-needs-reason", "blank-reason", "bad-name"],
)  # fmt: skip
def test_cli_mistakes_exit_2_and_say_what_to_fix(
    store_root: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    args = [a.format(tmp=tmp_path / "new", busy=busy) for a in args]
    result = cli(store_root, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def api_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        store: ObjectStore = LocalObjectStore(tmp_path / "data")
    else:
        minio = request.getfixturevalue("minio_server")
        bucket = f"api-{uuid.uuid4().hex[:10]}"
        minio.ensure_bucket(bucket, versioning=False)  # the first publish turns it on
        store = S3ObjectStore(minio.boto3_client(), bucket)
    publish_two(store)
    return store


@pytest.fixture
async def http(api_store: ObjectStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        environment="test",
        home=tmp_path / "home",
        store=StoreSettings(backend="local", local_root=str(tmp_path / "data")),
        api=ApiSettings(operator_token=OPERATOR),
    )
    ctx = AppContext(settings=settings, sessions=None, temporal=None, store=api_store)  # type: ignore[arg-type]
    app = create_app(ctx)  # the real error handlers and auth; the datasets router added here
    app.include_router(dataset_routes.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {OPERATOR}"}
    ) as client:
        yield client


async def test_api_lists_and_shows(http: httpx.AsyncClient) -> None:
    r = await http.get("/datasets")
    assert r.status_code == 200, r.text
    assert r.json() == {"datasets": [{"name": "pets", "versions": [1, 2], "latest": 2}]}

    r = await http.get("/datasets/pets/versions")
    body = r.json()
    assert body["latest"] == 2
    assert [(v["version"], v["item_count"], v["deprecated"]) for v in body["versions"]] == [
        (1, 30, None),
        (2, 28, None),
    ]

    r = await http.get("/datasets/pets/versions/2")
    manifest = r.json()
    assert (manifest["version"], manifest["parent"], manifest["latest"]) == (2, 1, True)
    assert manifest["item_count"] == 28
    assert all({"key", "sha256", "size", "role"} <= set(f) for f in manifest["files"])

    r = await http.get("/datasets/pets/versions/2/verify")
    assert r.json() == {"dataset": "pets", "version": 2, "ok": True, "problems": []}


async def test_api_diff(http: httpx.AsyncClient) -> None:
    r = await http.get("/datasets/pets/diff", params={"from": 1, "to": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"added": 1, "removed": 3, "changed": 1}
    assert body["added"] == ["cmp_y-0"]
    assert body["changed"] == [
        {"item_id": "cmp_x-000003", "fields": {"labels": {"before": ["cat"], "after": ["dog"]}}}
    ]
    r = await http.get("/datasets/pets/diff", params={"from": 1, "to": 2, "limit": 1})
    assert r.json()["removed"] == ["cmp_x-000000"] and r.json()["truncated"] is True
    r = await http.get("/datasets/pets/diff", params={"from": 1})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "to"


async def test_api_deprecate_and_rollback(http: httpx.AsyncClient) -> None:
    r = await http.post("/datasets/pets/versions/2/deprecate", json={"reason": "bad boxes"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["reason"], body["by"], body["created"], body["latest"]) == (
        "bad boxes",
        "operator",
        True,
        True,
    )
    r = await http.post("/datasets/pets/versions/2/deprecate", json={"reason": "again"})
    assert (r.json()["reason"], r.json()["created"]) == ("bad boxes", False)

    r = await http.post("/datasets/pets/rollback", json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"dataset": "pets", "latest": 1, "sequence": 3}
    r = await http.post("/datasets/pets/rollback", json={"version": 2})
    assert r.status_code == 409
    assert "deprecated" in r.json()["message"]
    r = await http.post("/datasets/pets/rollback", json={"version": 2, "force": True})
    assert r.status_code == 200
    versions = (await http.get("/datasets/pets/versions")).json()["versions"]
    assert versions[1]["deprecated"]["reason"] == "bad boxes"
    assert versions[1]["latest"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("GET", "/datasets/nope/versions", None, "no dataset named 'nope'"),
        ("GET", "/datasets/pets/versions/9", None, "no version 9 (versions: 1, 2)"),
        ("GET", "/datasets/nope/versions/1", None, "no dataset named 'nope'"),
        ("GET", "/datasets/pets/versions/9/verify", None, "no version 9"),
        ("GET", "/datasets/pets/diff?from=1&to=9", None, "no version 9"),
        ("POST", "/datasets/pets/versions/9/deprecate", {"reason": "x"}, "no version 9"),
        ("POST", "/datasets/pets/rollback", {"version": 9}, "no version 9"),
    ],
)
async def test_api_unknown_names_are_404(
    http: httpx.AsyncClient, method: str, path: str, body: Any, message: str
) -> None:
    r = await http.request(method, path, json=body)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert message in r.json()["message"]


async def test_api_is_operator_only(http: httpx.AsyncClient) -> None:
    r = await http.get("/datasets", headers={"Authorization": ""})
    assert r.status_code == 401
    r = await http.get("/datasets", headers={"Authorization": "Bearer someone-else"})
    assert r.status_code == 403
    r = await http.post(
        "/datasets/pets/rollback", json={"version": 1}, headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 403


async def test_api_refuses_bad_input(http: httpx.AsyncClient) -> None:
    r = await http.get("/datasets/Bad.Name/versions")
    assert r.status_code == 422
    assert "invalid name" in r.json()["message"]
    r = await http.post("/datasets/pets/versions/0/deprecate", json={"reason": "x"})
    assert r.status_code == 422
    r = await http.post("/datasets/pets/versions/1/deprecate", json={"reason": ""})
    assert r.status_code == 422
