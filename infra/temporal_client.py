"""Connecting to Temporal: one data converter (pydantic) for every client, worker and replayer."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from infra.settings import TemporalSettings

DATA_CONVERTER = pydantic_data_converter


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=DATA_CONVERTER,
        tls=settings.tls,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
    )
