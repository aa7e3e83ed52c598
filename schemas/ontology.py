"""The ontology of a campaign: classes, their geometry type, and their nested attributes.

A class is drawn as one geometry type:
- ``tag``: classification (single- or multi-label, see ``Ontology.multi_label``);
- ``box``: an axis-aligned box, or a rotated one when ``rotated`` is true;
- ``polygon``, ``polyline``;
- ``keypoints``: named points with per-point OKS sigmas, a skeleton, visibility per point;
- ``mask``: an RLE mask (COCO-compatible), for semantic or instance segmentation.

Attributes nest under a class: single choice, multiple choice, number, or text.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASS_NAME = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"
Geometry = Literal["tag", "box", "polygon", "polyline", "keypoints", "mask"]
GEOMETRIES: tuple[Geometry, ...] = ("tag", "box", "polygon", "polyline", "keypoints", "mask")
DEFAULT_MAX_OBJECTS = 500


class AttributeDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CLASS_NAME)
    kind: Literal["single", "multi", "number", "text"]
    options: list[str] = Field(default_factory=list, description="For single and multi.")
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = Field(500, ge=1, le=10_000, description="For text.")

    @model_validator(mode="after")
    def _options_fit_kind(self) -> Self:
        if self.kind in {"single", "multi"}:
            if not self.options:
                raise ValueError(f"attribute {self.name!r}: a {self.kind} choice needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError(f"attribute {self.name!r}: options repeat")
        elif self.options:
            raise ValueError(f"attribute {self.name!r}: options only apply to choices")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"attribute {self.name!r}: minimum is above maximum")
        return self


class KeypointDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CLASS_NAME)
    # The per-point constant of Object Keypoint Similarity (COCO's sigmas: 0.025 for eyes to
    # 0.107 for hips). Larger means the point is harder to place and errors count less.
    sigma: float = Field(0.05, gt=0.0, le=1.0)


class ClassDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CLASS_NAME)
    description: str = ""
    geometry: Geometry = "tag"
    rotated: bool = Field(False, description="Boxes only: may the box be rotated?")
    attributes: list[AttributeDef] = Field(default_factory=list)
    keypoints: list[KeypointDef] = Field(default_factory=list)
    skeleton: list[tuple[str, str]] = Field(
        default_factory=list, description="Keypoints only: pairs of point names joined by a bone."
    )
    agreement_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="Overrides the campaign threshold for this class."
    )

    @model_validator(mode="after")
    def _geometry_fits(self) -> Self:
        if self.rotated and self.geometry != "box":
            raise ValueError("rotated only applies to boxes")
        if self.geometry == "keypoints":
            if not self.keypoints:
                raise ValueError("a keypoints class needs its keypoints")
            names = [k.name for k in self.keypoints]
            if len(set(names)) != len(names):
                raise ValueError("keypoint names repeat")
            for a, b in self.skeleton:
                if a not in names or b not in names:
                    raise ValueError(f"skeleton bone ({a}, {b}) names an unknown keypoint")
        elif self.keypoints or self.skeleton:
            raise ValueError("keypoints and skeleton only apply to keypoints classes")
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            raise ValueError("attribute names repeat")
        return self

    def attribute(self, name: str) -> AttributeDef | None:
        return next((a for a in self.attributes if a.name == name), None)


class Ontology(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[ClassDef] = Field(min_length=1)
    multi_label: bool = Field(False, description="Tags: may an image carry several classes?")
    segmentation: Literal["semantic", "instance"] = Field(
        "instance", description="Masks: one mask per class (semantic) or per object (instance)."
    )
    max_objects: int = Field(DEFAULT_MAX_OBJECTS, ge=1, le=10_000)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for cls in self.classes:
            if cls.name in seen:
                raise ValueError(f"class {cls.name!r} is listed twice")
            seen.add(cls.name)
        if len(self.tag_classes) == 1 and not self.multi_label and len(self.classes) == 1:
            raise ValueError("a single-label classification needs at least two classes")
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def tag_classes(self) -> list[ClassDef]:
        return [c for c in self.classes if c.geometry == "tag"]

    @property
    def is_classification(self) -> bool:
        """Only tags: the whole answer is a choice of classes."""
        return all(c.geometry == "tag" for c in self.classes)

    def by_name(self, name: str) -> ClassDef | None:
        return next((c for c in self.classes if c.name == name), None)

    def threshold_for(self, labels: list[str], default: float) -> float:
        """The agreement an item needs: the strictest override among its labels, else default."""
        overrides = [
            c.agreement_threshold
            for c in self.classes
            if c.name in labels and c.agreement_threshold is not None
        ]
        return max(overrides, default=default)
