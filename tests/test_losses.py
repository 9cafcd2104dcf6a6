"""Losses against hand-computed values."""

import math

import torch

from vidreid.losses import BatchHardTripletLoss, CrossEntropyLabelSmooth, pairwise_distance


def test_label_smoothing_matches_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    logp = torch.log_softmax(logits, 1)[0]
    eps = 0.1
    expect = -((1 - eps) * logp[0] + eps / 3 * logp.sum())
    assert torch.allclose(CrossEntropyLabelSmooth(eps)(logits, torch.tensor([0])), expect)


def test_batch_hard_triplet_euclidean_hand_case():
    # 1-D points: pid 0 at 0 and 1; pid 1 at 3 and 7
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0: ap=1, an=3 → max(0, 1-3+0.5)=0 ; anchor 1: ap=1, an=2 → 0 ; anchor 2: ap=4, an=2 → 2.5
    # anchor 3: ap=4, an=6 → 0
    loss = BatchHardTripletLoss(margin=0.5, distance="euclidean")(x, y)
    assert math.isclose(loss.item(), 2.5 / 4, rel_tol=1e-5)
    soft = BatchHardTripletLoss(distance="euclidean", soft_margin=True)(x, y)
    expect = sum(math.log1p(math.exp(v)) for v in (1 - 3, 1 - 2, 4 - 2, 4 - 6)) / 4
    assert math.isclose(soft.item(), expect, rel_tol=1e-5)


def test_cosine_distance_and_triplet():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = pairwise_distance(x, "cosine")
    assert torch.allclose(d, torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 1: d_ap = -c, d_an = -c (to [0,1]) → relu(0 + 0.3) = 0.3
    loss = BatchHardTripletLoss(margin=0.3, distance="cosine")(x, y)
    # c = cos 45° = 0.7071. anchor 0: ap=-c, an=min(-cos(0,[0,1])=0, -cos([1,0],[-1,1])=+c)=0 → -c+0.3<0 → 0
    # anchor 2: ap=-cos([0,1],[-1,1])=-c, an=min(-c (to [1,1]), 0) = -c → 0.3
    # anchor 3: ap=-c, an=min(+c, 0)=0 → -c+0.3 → 0
    per = [0.0, 0.3, 0.3, 0.0]
    assert math.isclose(loss.item(), sum(per) / 4, rel_tol=1e-5)


def test_no_valid_anchor_gives_zero_with_grad():
    x = torch.randn(3, 4, requires_grad=True)
    loss = BatchHardTripletLoss()(x, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
