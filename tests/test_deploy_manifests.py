"""The deployment files say only what Quorum understands (they cannot be run here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cli.main import build_parser
from infra.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "infra" / "deploy"
REPO = DEPLOY.parents[1]


def _setting_names(model: type[BaseModel] = Settings, prefix: str = "QUORUM_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _setting_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def _quorum_env(doc: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(key, str) and key.startswith("QUORUM_") and not isinstance(value, dict):
                found[key] = str(value)
            found |= _quorum_env(value)
    elif isinstance(doc, list):
        for value in doc:
            found |= _quorum_env(value)
    return found


def _commands(doc: Any) -> list[list[str]]:
    found: list[list[str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "command" and isinstance(value, list) and value and value[0] == "quorum":
                found.append([str(v) for v in value])
            else:
                found += _commands(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _commands(value)
    return found


DOCS = {
    "compose.yaml": list(yaml.safe_load_all((DEPLOY / "compose.yaml").read_text())),
    "k8s/quorum.yaml": list(yaml.safe_load_all((DEPLOY / "k8s" / "quorum.yaml").read_text())),
}


@pytest.mark.parametrize("name", DOCS)
def test_every_quorum_variable_is_a_real_setting(name: str) -> None:
    env = _quorum_env(DOCS[name])
    assert env, "no settings found"
    unknown = set(env) - _setting_names()
    assert unknown == set(), f"{name} sets variables Quorum does not read: {unknown}"
    assert env.get("QUORUM_ENVIRONMENT") == "production"


@pytest.mark.parametrize("name", DOCS)
def test_every_command_is_a_real_quorum_command(name: str) -> None:
    commands = _commands(DOCS[name])
    assert {c[1] for c in commands} >= {"api", "worker", "db"}
    for command in commands:
        build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command


def test_the_image_copies_every_installed_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", (DEPLOY / "Dockerfile").read_text(), re.M))
    assert packages - {"bench"} <= copied, f"not copied: {packages - copied}"


def test_kubernetes_objects_are_well_formed() -> None:
    kinds = [d["kind"] for d in DOCS["k8s/quorum.yaml"]]
    assert {
        "Deployment",
        "Service",
        "Job",
        "ConfigMap",
        "Secret",
        "HorizontalPodAutoscaler",
    } <= set(kinds)
    for doc in DOCS["k8s/quorum.yaml"]:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"] == labels
