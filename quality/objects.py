"""The data that object-level agreement and consensus work on, and what they return.

`quality` stays independent of the project's schemas: these types hold plain mappings shaped
exactly like the answer JSON of ``schemas.annotations`` (see each geometry below), so a caller
converts a validated response once and this package never imports pydantic models.

Geometry ``data`` by type (image pixels, origin top-left, x right, y down):

* ``tag``: ``{}`` (the label is the whole answer).
* ``box``: ``{"x", "y", "w", "h", "angle"}``: top-left corner and size of the unrotated box,
  and ``angle`` in degrees, clockwise about the box centre (missing means 0).
* ``polygon``: ``{"points": [[x, y], ...]}``, implicitly closed.
* ``polyline``: ``{"points": [[x, y], ...]}``, open.
* ``keypoints``: ``{"points": [[x, y, v], ...]}`` in the class's keypoint order, COCO visibility
  ``v``: 0 not labeled (its coordinates are ignored and may be null), 1 hidden, 2 visible.
* ``mask``: ``{"rle": {"size": [height, width], "counts": [...] | "..."}}``, COCO RLE in
  column-major order (``counts`` a list of run lengths starting with zeros, or pycocotools'
  compressed string).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "GEOMETRIES",
    "Annotation",
    "ClassSpec",
    "ConsensusObject",
    "ItemAgreement",
    "PairAgreement",
    "ResponseObjects",
]

GEOMETRIES: Final = ("tag", "box", "polygon", "polyline", "keypoints", "mask")
ATTRIBUTE_KINDS: Final = ("single", "multi", "number", "text")


@dataclass(frozen=True)
class ClassSpec:
    """What the math needs to know about one class of the ontology.

    Attributes:
        name: the class name (the ``label`` of its objects).
        geometry: one of `GEOMETRIES`.
        sigmas: keypoints: the OKS constant ``sigma_i`` per point, in the class's point order
            (empty: 0.05 for every point, the ontology's default). Polylines: optionally one
            value, the tolerance ``kappa`` of `quality.similarity.polyline_similarity`.
        attribute_kinds: attribute name -> ``"single" | "multi" | "number" | "text"``; decides
            how two values of the attribute are compared (exact match, or Jaccard for
            ``multi``). Attributes missing here are compared exactly (lists by Jaccard).
    """

    name: str
    geometry: str
    sigmas: tuple[float, ...] = ()
    attribute_kinds: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES:
            raise ValueError(
                f"class {self.name!r}: geometry must be one of {GEOMETRIES}, got {self.geometry!r}"
            )
        for sigma in self.sigmas:
            if not (sigma > 0 and sigma < float("inf")):
                raise ValueError(f"class {self.name!r}: sigmas must be positive, got {sigma}")
        if self.geometry == "polyline" and len(self.sigmas) > 1:
            raise ValueError(f"class {self.name!r}: a polyline takes at most one sigma (kappa)")
        if self.sigmas and self.geometry not in ("keypoints", "polyline"):
            raise ValueError(f"class {self.name!r}: sigmas only apply to keypoints and polylines")
        for name, kind in self.attribute_kinds.items():
            if kind not in ATTRIBUTE_KINDS:
                raise ValueError(
                    f"class {self.name!r}: attribute {name!r} has kind {kind!r}, "
                    f"expected one of {ATTRIBUTE_KINDS}"
                )


@dataclass(frozen=True)
class Annotation:
    """One object of one response.

    Attributes:
        response_id, annotator_id: the response it belongs to and who gave it.
        index: its position in the response's ``objects`` list (what the review page shows).
        label: its class.
        geometry: its geometry type; must be its class's.
        data: the geometry fields, exactly as in the answer JSON (see the module docstring).
        attributes: attribute name -> value; ``None`` and a missing name both mean "not given".
    """

    response_id: str
    annotator_id: str
    index: int
    label: str
    geometry: str
    data: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseObjects:
    """One annotator's whole answer to one item; ``objects`` may be empty (they saw nothing)."""

    response_id: str
    annotator_id: str
    objects: Sequence[Annotation]


@dataclass(frozen=True)
class PairAgreement:
    """How two responses agree, object by object.

    Attributes:
        annotator_a, annotator_b: the two annotators.
        score: the pair agreement in [0, 1] (see `quality.matching.item_agreement`).
        matches: ``(index_a, index_b, similarity)`` for every matched pair of objects, indices
            into each response's objects list, similarity the geometric one.
        unmatched_a, unmatched_b: indices of the objects that matched nothing.
        response_a, response_b: the two response ids.
        attribute_scores: attribute agreement of each match, aligned with ``matches``
            (1.0 where the two objects carry no attributes).
    """

    annotator_a: str
    annotator_b: str
    score: float
    matches: tuple[tuple[int, int, float], ...]
    unmatched_a: tuple[int, ...]
    unmatched_b: tuple[int, ...]
    response_a: str = ""
    response_b: str = ""
    attribute_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class ItemAgreement:
    """The agreement of one item: a score in [0, 1] and the pairwise detail behind it."""

    score: float
    pairs: tuple[PairAgreement, ...]


@dataclass(frozen=True)
class ConsensusObject:
    """One object of an item's consensus.

    Attributes:
        label: its class.
        geometry: its geometry type.
        data: the fused geometry, in the answer JSON shape (masks always with list ``counts``).
        attributes: the majority value of each attribute (see `quality.geometry_consensus`).
        confidence: in [0, 1]; the weighted share of responses that drew the object times the
            weighted mean similarity of their objects to this one (tags: the vote share).
        support: ids of the responses it was built from, in input order.
        members: ``(response_id, index)`` of each object it was built from, in input order.
    """

    label: str
    geometry: str
    data: Mapping[str, Any]
    attributes: Mapping[str, Any]
    confidence: float
    support: tuple[str, ...]
    members: tuple[tuple[str, int], ...] = ()
