"""The adaptive decision on one item's answers, without a database: the posterior, the leading
class, and when asking for more would be futile."""

from __future__ import annotations

from activities.item_activities import _adaptive_consensus
from db.models import Response
from schemas.ontology import Ontology
from services.consensus import assess

ONTOLOGY = Ontology.model_validate(
    {"classes": [{"name": "circle"}, {"name": "square"}, {"name": "triangle"}]}
)


def _answers(*labels: str) -> list[Response]:
    return [
        Response(
            id=f"r{n}",
            annotator_id=f"a{n}",
            body={"objects": [{"type": "tag", "label": label, "attributes": {}}]},
        )
        for n, label in enumerate(labels)
    ]


def _decide(*labels: str) -> tuple[str, float, bool]:
    answers = _answers(*labels)
    adaptive = _adaptive_consensus(ONTOLOGY, answers, {}, assess(ONTOLOGY, answers, None))
    return adaptive.assessment.objects[0]["label"], adaptive.confidence, adaptive.futile


def test_two_agreeing_answers_at_the_prior_accuracy_reach_0_916() -> None:
    label, confidence, futile = _decide("square", "square")
    # 0.7^2 / (0.7^2 + 2 x 0.15^2), every annotator at the prior accuracy 0.7.
    assert label == "square" and abs(confidence - 0.49 / 0.535) < 1e-9 and not futile


def test_a_dissent_that_cannot_change_the_winner_is_futile_to_pursue() -> None:
    label, confidence, futile = _decide("circle", "circle", "circle", "square")
    assert label == "circle" and confidence < 0.95  # below a 0.95 target...
    assert futile  # ...but no fifth answer could make anything but circle lead


def test_a_contested_item_is_not_futile() -> None:
    _, confidence, futile = _decide("circle", "square")
    assert confidence < 0.6 and not futile  # the next answer decides it
