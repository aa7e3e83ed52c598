"""What an annotator submits for one image, and its validation against the ontology.

A response is a list of objects. For classification each object is a tag naming a class; the
geometry types join this union later. Validation returns one FieldError per problem, naming the
object and the field (``objects.1.label``), so the API can refuse the whole response.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.campaign_spec import FieldError
from schemas.ontology import Ontology

MAX_OBJECTS = 500


class TagObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tag"] = "tag"
    label: str = Field(min_length=1, max_length=64)


class ResponseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: list[TagObject] = Field(max_length=MAX_OBJECTS)

    def labels(self) -> list[str]:
        return sorted({o.label for o in self.objects})


def validate_response(ontology: Ontology, body: ResponseBody) -> list[FieldError]:
    """Check a response against the ontology; an empty list means it is acceptable."""
    errors: list[FieldError] = []
    known = set(ontology.class_names)
    for i, obj in enumerate(body.objects):
        if obj.label not in known:
            errors.append(
                FieldError(
                    field=f"objects.{i}.label",
                    message=f"unknown class {obj.label!r}; expected one of {sorted(known)}",
                )
            )
    labels = [o.label for o in body.objects]
    if not ontology.multi_label and len(labels) != 1:
        errors.append(
            FieldError(field="objects", message="give exactly one tag: this is single-label")
        )
    if len(labels) != len(set(labels)):
        errors.append(FieldError(field="objects", message="a class is tagged more than once"))
    return errors
