"""``vidreid.embed`` as steps (reading, backend choice, batching): embeddings pinned against a hand computation of
the all-frames test clips, the same for every batch size; and a library call that prints nothing (no Lightning
``_pytree`` deprecation warning, no ``Predicting`` bar unless asked) and leaves the caller's warning filters as
they were."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vidreid
from vidreid.deploy.inference import EmbedModel, data_settings, predict, read_model


class ClipStats(torch.nn.Module):
    """``(n, T, 3, H, W)`` uint8 clips → ``(n, 2)``: the clip's mean pixel value and its first frame's mean."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # embed reads the device off a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return torch.stack([x.mean(dim=(1, 2, 3, 4)), x[:, 0].mean(dim=(1, 2, 3))], 1) + self.dummy


@pytest.fixture
def tracklets(tmp_path) -> list[Path]:
    """Three folders of flat grey frames: frame i of tracklet k has value 10 (i + 1) + k, lengths 5, 4, 1."""
    out = []
    for k, n in enumerate((5, 4, 1)):
        d = tmp_path / f"t{k}"
        d.mkdir()
        for i in range(n):
            Image.fromarray(np.full((32, 16, 3), 10 * (i + 1) + k, np.uint8)).save(d / f"{i:03d}.png")
        out.append(d)
    return out


def _expected() -> torch.Tensor:
    """All-frames clips at T=2 (docs/methods.md §1.4): 5 frames pad to [0,1,2,3,4,4] → clips {0,3},{1,4},{2,4};
    4 frames → {0,2},{1,3}; 1 frame → {0,0}. Row = (mean of clip means, mean of clip first frames)."""
    m = lambda k, i: 10 * (i + 1) + k  # noqa: E731
    rows = []
    for k, clips in enumerate(([(0, 3), (1, 4), (2, 4)], [(0, 2), (1, 3)], [(0, 0)])):
        rows.append([np.mean([(m(k, a) + m(k, b)) / 2 for a, b in clips]), np.mean([m(k, a) for a, _ in clips])])
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_embed_gives_the_hand_computed_clip_average_for_every_batch_size(tracklets, batch_size):
    emb = vidreid.embed(ClipStats(), tracklets, seq_len=2, size=(32, 16), device="cpu", batch_size=batch_size)
    torch.testing.assert_close(emb, _expected(), rtol=0, atol=1e-4)
    unit = vidreid.embed(ClipStats(), tracklets, seq_len=2, size=(32, 16), device="cpu", normalize=True)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(_expected(), dim=1), rtol=0, atol=1e-5)


def test_the_steps_compose_to_embed(tracklets):
    loaded = read_model(ClipStats(), seq_len=2, size=(32, 16))
    assert isinstance(loaded, EmbedModel) and loaded.settings is None and loaded.sha256 is None
    data = data_settings(None, seq_len=2, size=(32, 16), test_scheme="evenly")
    assert data.clip == {"seq_len": 2, "test_scheme": "evenly"} and data.size == (32, 16)
    data = data_settings(None, seq_len=2, size=(32, 16))
    items = [vidreid.deploy.inference.as_tracklet(t, i) for i, t in enumerate(tracklets)]
    torch.testing.assert_close(predict(loaded.model, items, data, batch_size=2), _expected(), rtol=0, atol=1e-4)


def test_embed_prints_nothing_and_leaves_the_warning_filters_alone(tracklets, capfd):
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # torchvision's own notice that its image decoding is deprecated (a DeprecationWarning: hidden by
        # Python's default filters outside __main__) is not Lightning console noise; everything else must be silent
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        inside = list(warnings.filters)
        vidreid.embed(ClipStats(), tracklets, seq_len=2, size=(32, 16), device="cpu")
        after = list(warnings.filters)
    out, err = capfd.readouterr()
    assert "Predicting" not in out + err and "LeafSpec" not in out + err, (out, err)
    assert out.strip() == "" and err.strip() == "", (out, err)
    assert [str(w.message) for w in caught] == []
    assert after == inside and list(warnings.filters) == before


def test_the_progress_bar_is_drawn_when_asked(tracklets, capfd):
    vidreid.embed(ClipStats(), tracklets, seq_len=2, size=(32, 16), device="cpu", progress=True)
    out, err = capfd.readouterr()
    assert "Predicting" in out + err
