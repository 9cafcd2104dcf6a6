"""Evaluation: ranking (CMC/mAP/mINP), k-reciprocal re-ranking, st-ReID fusion, feature extraction."""
