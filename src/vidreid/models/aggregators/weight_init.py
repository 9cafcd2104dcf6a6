"""Weight initialisers shared by the aggregators (the re-ID "BoT" conventions).

Source: ``weights_init_kaiming`` / ``weight_init_classifier`` in WangYQ9/VideoReID_PSTA ``models/PSTA.py`` and
HWZhou99/STAFormer ``models/make_model.py`` (docs/methods.md §1.1, §2.1), and ``weights_init_kaiming`` in the
Person_reID_baseline_pytorch lineage used by st-ReID's PCB (docs/methods.md §5.1).
"""

from __future__ import annotations

from torch import nn


def kaiming_init_(module: nn.Module) -> None:
    """Recursively initialise ``module`` the BoT way.

    Linear: Kaiming-normal fan-out, bias 0. Conv (1d/2d): Kaiming-normal fan-in, bias 0. BatchNorm (affine): γ = 1, β = 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def classifier_init_(module: nn.Module, std: float = 0.001) -> None:
    """Every Linear inside ``module``: weight ~ N(0, std²) (std 0.001 in all reference codes), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
