"""timm backbone wrapper returning the intermediate maps an aggregator asks for (DESIGN.md §3.5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn


def _stage_module_names(model: nn.Module) -> list[str]:
    return [info["module"] for info in model.feature_info.get_dicts()]


class Backbone(nn.Module):
    """A timm model in ``features_only`` mode.

    Args:
        name: timm model name (``resnet50``, ``resnet50d``, ``resnest50d``, ``resnet18``, ``ibn``-variants...).
        pretrained: load timm's ImageNet weights (needs network access to the model hub).
        last_stride: 1 sets the stride of the last stage's first block to 1 (BoT "last stride 1" trick, used by
            PSTA, STA and PCB), doubling the final map to 16×8 at 256×128 input; 2 keeps the model as is.
        stages: 1-based stage indices to return (1..4 = ResNet ``layer1..layer4``).
        weights_path: optional local ``.pth``/``.safetensors`` state dict loaded after construction
            (keys of the full classification model are accepted; classifier keys are ignored).
        drop_path_rate: stochastic depth for models that support it.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``img_size: [256, 128]`` for ViTs).

    Stages: CNNs with 5 feature levels (stem + 4 stages) map stage ``s`` to level ``s``; other models
    (ViTs: one level per block) map stage 4 to the last level, 3 to the one before, and so on.

    Input ``(N, 3, H, W)``; output: list of ``(N, C_s, h_s, w_s)`` for each stage in ``stages``.

    Raises:
        ValueError: unknown ``last_stride`` or stage index; FileNotFoundError: missing ``weights_path``.
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        last_stride: int = 2,
        stages: Sequence[int] = (4,),
        weights_path: str | None = None,
        drop_path_rate: float | None = None,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"backbone.last_stride must be 1 or 2, got {last_stride!r}")
        kwargs = dict(model_kwargs or {})
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        probe = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        n_stages = len(probe.feature_info)
        del probe
        # timm's resnets expose 5 feature levels (stem + 4 stages); transformers expose one per block.
        self.stages = tuple(int(s) for s in stages)
        out_indices = []
        for s in self.stages:
            idx = s + (n_stages - 5) if n_stages == 5 else n_stages - 1 - (4 - s)
            if not 0 <= idx < n_stages:
                raise ValueError(f"stage {s} does not exist in backbone {name!r} ({n_stages} feature levels)")
            out_indices.append(idx)
        self.body = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices), **kwargs
        )
        self.name = name
        if weights_path:
            self.load_weights(weights_path)
        if last_stride == 1:
            self._set_last_stride_one()
        self.channels: tuple[int, ...] = tuple(self.body.feature_info.channels())

    def _set_last_stride_one(self) -> None:
        names = _stage_module_names(self.body)
        last = self.body.get_submodule(names[-1])
        first_block = next(iter(last.children())) if isinstance(last, nn.Sequential) else last
        changed = False
        for mod_name, mod in list(first_block.named_modules()):
            stride = getattr(mod, "stride", None)
            if isinstance(mod, nn.Conv2d) and tuple(mod.stride) == (2, 2):
                mod.stride = (1, 1)
                changed = True
            elif isinstance(mod, nn.AvgPool2d) and stride in (2, (2, 2)):
                if mod.kernel_size in (2, (2, 2)):  # ResNet-D style avg-down: drop it
                    parent_name, _, child = mod_name.rpartition(".")
                    setattr(first_block.get_submodule(parent_name) if parent_name else first_block, child, nn.Identity())
                else:  # ResNeSt avd pooling 3x3/2 pad 1 → 3x3/1 pad 1 keeps the size
                    mod.stride = 1
                changed = True
        if not changed:
            raise ValueError(f"backbone {self.name!r}: found no stride-2 layer in the last stage to set to 1")

    def load_weights(self, path: str | Path) -> None:
        """Load a local state dict (full-model or features-only keys); unknown keys are ignored."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
        own = self.body.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not matched:
            raise ValueError(f"no tensor in {path} matches backbone {self.name!r} (keys like {next(iter(own))!r})")
        self.body.load_state_dict(matched, strict=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))
