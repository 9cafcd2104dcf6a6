"""Evaluation: ranking (CMC/mAP/mINP), k-reciprocal re-ranking, st-ReID fusion, feature extraction."""

from vidreid.evaluation.metric import ReIDMetric
from vidreid.evaluation.ranking import RankingResult, evaluate_ranking, junk_mask, pairwise_distance
from vidreid.evaluation.reranking import k_reciprocal_rerank
from vidreid.evaluation.spatial_temporal import SpatialTemporalModel, joint_distance, joint_score

__all__ = [
    "RankingResult",
    "ReIDMetric",
    "SpatialTemporalModel",
    "evaluate_ranking",
    "joint_distance",
    "joint_score",
    "junk_mask",
    "k_reciprocal_rerank",
    "pairwise_distance",
]
