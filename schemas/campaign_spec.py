"""The campaign spec an operations team writes (YAML or JSON), validated field by field.

A spec with errors is refused as a whole: `spec_errors` turns pydantic's errors into one
`FieldError` per bad field, with a dotted path (``images.directory``) the operator can find.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.ontology import Ontology

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

# Bounds that keep a campaign inside Temporal's limits (see TEMPORAL.md): item workflows in
# flight stay well under the 2,000 pending-children/activities ceiling.
MAX_WINDOW = 1000
MAX_ANNOTATORS_PER_IMAGE = 50


def parse_duration(value: Any) -> Any:
    """Accept 90, 90.5, "90s", "10m", "2h", "1d" or an ISO-8601 duration (left to pydantic)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


class FieldError(BaseModel):
    """One problem with one field of a request, named by its dotted path."""

    field: str
    message: str


class ImageSource(BaseModel):
    """Where the images come from: exactly one of a directory, an S3 prefix, a manifest or URIs."""

    model_config = ConfigDict(extra="forbid")

    directory: str | None = Field(None, description="A local directory of image files.")
    s3_prefix: str | None = Field(None, description="s3://bucket/prefix of image objects.")
    manifest: str | None = Field(
        None, description="A file with one image URI per line (or JSON Lines with a 'uri')."
    )
    uris: list[str] | None = Field(None, description="Image URIs given inline.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("directory", "s3_prefix", "manifest", "uris") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of directory, s3_prefix, manifest or uris"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @field_validator("s3_prefix")
    @classmethod
    def _s3_uri(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", v):
            raise ValueError("must look like s3://bucket/prefix")
        return v


class CampaignSpec(BaseModel):
    """What an operator launches. Durations accept seconds or "30s", "10m", "2h", "1d"."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG, description="Lower-case slug naming the campaign.")
    dataset: str | None = Field(
        None, pattern=SLUG, description="The dataset its labels are published to (default: name)."
    )
    images: ImageSource
    ontology: Ontology
    annotators_per_image: int = Field(ge=1, le=MAX_ANNOTATORS_PER_IMAGE)
    agreement_threshold: float = Field(gt=0.0, le=1.0)
    lease_timeout: timedelta = Field(description="How long an annotator holds an image.")
    review_timeout: timedelta = Field(description="How long an item waits for an expert.")
    window: int = Field(256, ge=1, le=MAX_WINDOW, description="Item workflows in flight at once.")

    _durations = field_validator("lease_timeout", "review_timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("lease_timeout", "review_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 1:
            raise ValueError("must be at least 1 second")
        if v > timedelta(days=365):
            raise ValueError("must be at most 365 days")
        return v

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.name


def spec_errors(exc: ValidationError) -> list[FieldError]:
    """One FieldError per bad field, with a dotted path such as ``ontology.classes.1.name``."""
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "this field is required"
        errors.append(FieldError(field=".".join(loc) or "(spec)", message=message))
    return errors


def parse_spec(data: Any) -> tuple[CampaignSpec | None, list[FieldError]]:
    """Validate raw spec data; return the spec or the list of field errors (never both)."""
    if not isinstance(data, dict):
        return None, [FieldError(field="(spec)", message="the spec must be a mapping of fields")]
    try:
        return CampaignSpec.model_validate(data), []
    except ValidationError as exc:
        return None, spec_errors(exc)
