"""Temporal aggregators, one file per method."""

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput

__all__ = ["Aggregator", "AggregatorOutput"]
