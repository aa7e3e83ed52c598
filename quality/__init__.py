"""Pure consensus and agreement math (numpy and the standard library only).

The names re-exported here are the package's public API; the modules' other names may change.
"""

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

__all__ = [
    "TIE_RTOL",
    "AnswersLike",
    "ClassificationAggregator",
    "ConsensusResult",
    "MajorityVote",
    "Vote",
    "cohen_kappa",
    "fleiss_kappa",
    "item_agreement",
    "jaccard",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_nominal_matrix",
    "majority_vote",
]
