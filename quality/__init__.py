"""Pure consensus and agreement math (numpy, scipy, shapely and the standard library).

The names re-exported here are the package's public API; the modules' other names may change.
"""

from quality.adaptive import (
    Decision,
    confusion_posterior,
    expected_confidence_gain,
    is_futile,
    one_coin_matrix,
    one_coin_posterior,
    redundancy_decision,
    shrunk_confusions,
    smoothed_accuracy,
    vote_weight,
)
from quality.agreement_metrics import (
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    krippendorff_alpha_nominal_matrix,
)
from quality.base import TIE_RTOL, AnswersLike, ClassificationAggregator
from quality.classification import (
    ConsensusResult,
    MajorityVote,
    Vote,
    item_agreement,
    jaccard,
    majority_vote,
)
from quality.dawid_skene import DEFAULT_METHOD, METHODS, DawidSkene, make_aggregator

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "TIE_RTOL",
    "AnswersLike",
    "ClassificationAggregator",
    "ConsensusResult",
    "DawidSkene",
    "Decision",
    "MajorityVote",
    "Vote",
    "cohen_kappa",
    "confusion_posterior",
    "expected_confidence_gain",
    "fleiss_kappa",
    "is_futile",
    "item_agreement",
    "jaccard",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_nominal_matrix",
    "majority_vote",
    "make_aggregator",
    "one_coin_matrix",
    "one_coin_posterior",
    "redundancy_decision",
    "shrunk_confusions",
    "smoothed_accuracy",
    "vote_weight",
]

# Object annotations (tags, boxes, polygons, polylines, keypoints, masks): per-type similarity,
# per-item agreement and consensus, and campaign metrics. `item_agreement` and `consensus` of
# `quality.matching` / `quality.geometry_consensus` are exported under object_* names, since
# `item_agreement` above is the classification one.
from quality.campaign_metrics import (
    AnnotatorAgreement,
    CampaignItem,
    GeometryAlpha,
    GeometryUnit,
    KappaMatrix,
    annotator_consensus_agreement,
    cohen_kappa_matrix,
    geometry_alpha,
    geometry_units,
    krippendorff_alpha,
)
from quality.geometry_consensus import ItemAssessment, assess_item
from quality.geometry_consensus import consensus as object_consensus
from quality.matching import DEFAULT_MATCH_THRESHOLD
from quality.matching import item_agreement as object_item_agreement
from quality.objects import (
    Annotation,
    ClassSpec,
    ConsensusObject,
    ItemAgreement,
    PairAgreement,
    ResponseObjects,
)
from quality.rle import rle_area, rle_decode, rle_encode, rle_iou
from quality.similarity import attribute_agreement, similarity

__all__ += [
    "DEFAULT_MATCH_THRESHOLD",
    "Annotation",
    "AnnotatorAgreement",
    "CampaignItem",
    "ClassSpec",
    "ConsensusObject",
    "GeometryAlpha",
    "GeometryUnit",
    "ItemAgreement",
    "ItemAssessment",
    "KappaMatrix",
    "PairAgreement",
    "ResponseObjects",
    "annotator_consensus_agreement",
    "assess_item",
    "attribute_agreement",
    "cohen_kappa_matrix",
    "geometry_alpha",
    "geometry_units",
    "krippendorff_alpha",
    "object_consensus",
    "object_item_agreement",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_iou",
    "similarity",
]
