"""Identity heads put on each aggregator feature: the BNNeck (BatchNorm1d + classifier; Luo et al., "Bag of Tricks
and a Strong Baseline for Deep Person Re-identification", CVPRW 2019, §3.4) or a plain classifier on the feature."""

from __future__ import annotations

from torch import Tensor, nn


class BNNeck(nn.Module):
    """``f (B, D) → bn (B, D) → logits (B, num_classes)``.

    Args:
        dim: feature size D.
        num_classes: training identities; 0 builds no classifier (``logits`` is then ``None``).
        bias_frozen: freeze the BN shift at 0 (BoT / PSTA); STAFormer trains it.
        classifier_std: init std of the classifier weights (STAFormer and PSTA: N(0, 0.001); AGRL: 0.01).
        classifier_bias: the classifier has a bias, initialised to 0 (STAFormer ``make_model.py`` ~l.130, PSTA
            ``models/PSTA.py`` ~l.90, AGRL ``sta.py``); BoT's classifier has none (the default).
        use_bn: ``False`` gives the ``linear`` head: no BN, ``bn = f`` and the classifier sees ``f`` (AGRL's STA).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        bias_frozen: bool = False,
        classifier_std: float = 0.001,
        classifier_bias: bool = False,
        use_bn: bool = True,
    ):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim) if use_bn else nn.Identity()
        if use_bn:
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
            self.bn.bias.requires_grad_(not bias_frozen)
        self.classifier = nn.Linear(dim, num_classes, bias=classifier_bias) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=classifier_std)
            if classifier_bias:
                nn.init.zeros_(self.classifier.bias)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor | None]:
        bn = self.bn(f)
        logits = self.classifier(bn) if self.classifier is not None and self.training else None
        return bn, logits
