"""Losses: functional losses (:mod:`.functional`: label-smoothed CE, batch-hard triplet, STAFormer's temporal
InfoNCE, STICC's slot diversity) and the named, weighted ``LossTerm`` criterion (:mod:`.criterion`)."""

from vidreid.losses.functional import (
    NCE_REDUCTIONS,
    BatchHardTripletLoss,
    CrossEntropyLabelSmooth,
    slot_diversity_loss,
    temporal_infonce,
)

__all__ = ["NCE_REDUCTIONS", "BatchHardTripletLoss", "CrossEntropyLabelSmooth", "slot_diversity_loss", "temporal_infonce"]
