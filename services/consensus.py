"""From stored answers to agreement and consensus, for every annotation type.

The adapter between the database (responses as JSON) and the pure math in ``quality``. One
entry point, ``assess``, used by the item workflow's activities, the review page and the
publisher, so all three always agree on what the consensus of an item is.

Single-label classification keeps its own rule: agreement is the share of answers behind the
plurality class, and a tie always goes to review (there is no majority to finalize). Every
other ontology uses the object-level agreement and consensus of ``quality.assess_item``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from db.models import Response
from quality import (
    Annotation,
    ClassSpec,
    ResponseObjects,
    Vote,
    assess_item,
    item_agreement,
    majority_vote,
)
from schemas.annotations import ResponseBody
from schemas.ontology import Ontology

# Consensus objects carry these beside the answer fields; they are not part of an answer.
PROVENANCE_FIELDS = ("confidence", "support")


@dataclass(frozen=True)
class Assessment:
    agreement: float
    objects: list[dict[str, Any]]  # answer-shaped objects + confidence + support
    confidence: float
    tie: bool
    details: dict[str, Any]  # pairwise matches, for the review page

    @property
    def labels(self) -> list[str]:
        return tag_labels(self.objects)


def tag_labels(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({o["label"] for o in objects if o.get("type") == "tag"})


def class_specs(ontology: Ontology) -> dict[str, ClassSpec]:
    return {
        c.name: ClassSpec(
            name=c.name,
            geometry=c.geometry,
            sigmas=tuple(k.sigma for k in c.keypoints) if c.geometry == "keypoints" else (),
            attribute_kinds={a.name: a.kind for a in c.attributes},
        )
        for c in ontology.classes
    }


class AnswerRow(Protocol):
    """What `response_objects` reads of an answer: a ``Response`` or a row of its columns."""

    @property
    def id(self) -> str: ...
    @property
    def annotator_id(self) -> str: ...
    @property
    def body(self) -> dict[str, Any]: ...


def response_objects(responses: Sequence[AnswerRow]) -> list[ResponseObjects]:
    out = []
    for r in responses:
        body = ResponseBody.model_validate(r.body)
        annotations = []
        for index, obj in enumerate(body.objects):
            data = obj.model_dump(mode="json", exclude={"type", "label", "attributes"})
            annotations.append(
                Annotation(
                    response_id=r.id,
                    annotator_id=r.annotator_id,
                    index=index,
                    label=obj.label,
                    geometry=obj.type,
                    data=data,
                    attributes=obj.attributes,
                )
            )
        out.append(
            ResponseObjects(response_id=r.id, annotator_id=r.annotator_id, objects=annotations)
        )
    return out


def assess(
    ontology: Ontology,
    responses: Sequence[Response],
    image_size: tuple[int, int] | None,
    *,
    weights: Mapping[str, float] | None = None,
) -> Assessment:
    """Agreement and consensus of one item's answers (``weights``: per annotator)."""
    if ontology.is_classification and not ontology.multi_label:
        votes = [
            Vote(
                annotator_id=r.annotator_id,
                labels=frozenset(ResponseBody.model_validate(r.body).labels()),
                response_id=r.id,
            )
            for r in responses
        ]
        result = majority_vote(
            votes, multi_label=False, class_order=ontology.class_names, weights=weights
        )
        return Assessment(
            agreement=item_agreement(votes, multi_label=False, weights=weights),
            objects=[
                {
                    "type": "tag",
                    "label": label,
                    "attributes": {},
                    "confidence": result.confidence,
                    "support": list(result.support),
                }
                for label in result.labels
            ],
            confidence=result.confidence,
            tie=result.tie,
            details={},
        )

    assessment = assess_item(
        response_objects(responses),
        class_specs(ontology),
        image_size=image_size,
        weights=weights,
        multi_label=ontology.multi_label,
        class_order=ontology.class_names,
    )
    objects = [
        {
            "type": c.geometry,
            "label": c.label,
            **dict(c.data),
            "attributes": dict(c.attributes),
            "confidence": c.confidence,
            "support": list(c.support),
        }
        for c in assessment.consensus
    ]
    confidence = (
        sum(o["confidence"] for o in objects) / len(objects)
        if objects
        else assessment.agreement.score
    )
    details = {
        "score": assessment.agreement.score,
        "pairs": [
            {
                "annotator_a": p.annotator_a,
                "annotator_b": p.annotator_b,
                "response_a": p.response_a,
                "response_b": p.response_b,
                "score": p.score,
                "matches": [list(m) for m in p.matches],
                "unmatched_a": list(p.unmatched_a),
                "unmatched_b": list(p.unmatched_b),
            }
            for p in assessment.agreement.pairs
        ],
    }
    return Assessment(
        agreement=assessment.agreement.score,
        objects=objects,
        confidence=confidence,
        tie=False,
        details=details,
    )


def strip_provenance(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A consensus object as an answer object (without confidence and support)."""
    return {k: v for k, v in obj.items() if k not in PROVENANCE_FIELDS}


def decided_objects(body: Mapping[str, Any], support: list[str]) -> list[dict[str, Any]]:
    """An expert's decision as consensus objects: certain, supported by what they accepted."""
    return [
        {**obj, "confidence": 1.0, "support": support}
        for obj in ResponseBody.model_validate(body).model_dump(mode="json")["objects"]
    ]


def score_against(
    ontology: Ontology,
    answer: Mapping[str, Any],
    reference: Mapping[str, Any],
    image_size: tuple[int, int] | None,
) -> float:
    """How well one answer matches a reference answer (a gold item's, or a consensus), 0..1.

    A single-label tag scores 1 when it names the reference's class, else 0. Every other
    ontology uses the pairwise agreement of the annotation types (matched objects' similarity,
    unmatched objects count against it), the same measure that decides agreement."""
    body = ResponseBody.model_validate({"objects": list(answer.get("objects", []))})
    ref = ResponseBody.model_validate(
        {"objects": [strip_provenance(o) for o in reference.get("objects", [])]}
    )
    if ontology.is_classification and not ontology.multi_label:
        return 1.0 if body.labels() == ref.labels() else 0.0
    if not body.objects and not ref.objects:
        return 1.0
    pair = [
        Response(id="answer", annotator_id="answer", body=body.model_dump(mode="json")),
        Response(id="reference", annotator_id="reference", body=ref.model_dump(mode="json")),
    ]
    return float(assess(ontology, pair, image_size).agreement)
