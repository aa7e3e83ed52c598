"""The ontology of a campaign: the classes an annotator may choose.

Classification only for now (single- or multi-label tags); geometry types and nested attributes
extend ``ClassDef`` without changing how a campaign carries its ontology.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASS_NAME = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"


class ClassDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CLASS_NAME)
    description: str = ""
    geometry: Literal["tag"] = "tag"
    agreement_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="Overrides the campaign threshold for this class."
    )


class Ontology(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[ClassDef] = Field(min_length=2)
    multi_label: bool = Field(False, description="May an image carry several classes?")

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for cls in self.classes:
            if cls.name in seen:
                raise ValueError(f"class {cls.name!r} is listed twice")
            seen.add(cls.name)
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def threshold_for(self, labels: list[str], default: float) -> float:
        """The agreement an item needs: the strictest override among its labels, else default."""
        overrides = [
            c.agreement_threshold
            for c in self.classes
            if c.name in labels and c.agreement_threshold is not None
        ]
        return max(overrides, default=default)
