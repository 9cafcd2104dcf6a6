"""A short synthetic street clip for the video tests: people drawn by the suite's synthetic people generator
(:mod:`vidreid.data.synthetic_people`) walking across a static background, with exact ground-truth boxes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidreid.data.synthetic_people import Painter, draw_person, sample_identity


@dataclass
class Walker:
    """Person ``pid`` (identity drawn from ``seed``) walking from ``x0`` to ``x1`` (feet x, px) at feet height
    ``y`` over frames ``[0, n)``, ``height`` px tall; hidden in the frames of ``hidden``."""

    pid: int
    seed: int
    x0: float
    x1: float
    y: float
    height: float
    hidden: tuple[int, ...] = ()


def background(h: int, w: int) -> np.ndarray:
    """A static RGB background: sky-to-ground gradient with a few fixed blocks (deterministic)."""
    y = np.linspace(0, 1, h)[:, None, None]
    img = (np.array([150, 160, 170]) * (1 - y) + np.array([90, 110, 80]) * y) * np.ones((1, w, 1))
    rng = np.random.default_rng(7)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h // 3))
        img[y0 : y0 + 20, x0 : x0 + 40] = rng.integers(60, 200, 3)
    return img.clip(0, 255).astype(np.uint8)


def render_clip(walkers: list[Walker], n: int = 30, size: tuple[int, int] = (240, 320)):
    """Frames ``[(H, W, 3) uint8 BGR]`` and ground truth ``{frame: [(pid, (x1, y1, x2, y2))]}`` (visible people)."""
    h, w = size
    bg = background(h, w)
    idents = {wk.pid: sample_identity(np.random.default_rng(wk.seed)) for wk in walkers}
    frames, gt = [], {}
    for t in range(n):
        canvas = Image.fromarray(bg.copy())
        gt[t] = []
        for wk in walkers:
            if t in wk.hidden:
                continue
            x = wk.x0 + (wk.x1 - wk.x0) * t / max(1, n - 1)
            layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
            view = "right" if wk.x1 > wk.x0 else "left"
            draw_person(Painter(layer, x, wk.y, 1.0), idents[wk.pid], view, wk.height, phase=t * 0.6)
            box = layer.getbbox()
            canvas.paste(layer, (0, 0), layer)
            if box is not None:
                gt[t].append((wk.pid, tuple(float(v) for v in box)))
        frames.append(np.asarray(canvas)[:, :, ::-1].copy())
    return frames, gt


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR frames as an MJPG .avi (decodable by every OpenCV build)."""
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened(), f"cannot write {path}"
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def write_det_txt(path: Path, gt: dict, jitter: float = 1.0, seed: int = 0, score: float = 0.9) -> Path:
    """Ground-truth boxes (jittered by up to ``jitter`` px) as a MOTChallenge det.txt (1-based frames)."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for t, items in sorted(gt.items()):
            for _, (x1, y1, x2, y2) in items:
                dx, dy = rng.uniform(-jitter, jitter, 2)
                f.write(f"{t + 1},-1,{x1 + dx:.2f},{y1 + dy:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score}\n")
    return path


def write_gt_txt(path: Path, gt: dict) -> Path:
    """The exact boxes with their person ids as a MOTChallenge gt.txt (1-based frames, conf 1, x/y/z -1)."""
    with path.open("w") as f:
        for t, items in sorted(gt.items()):
            for pid, (x1, y1, x2, y2) in items:
                f.write(f"{t + 1},{pid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1\n")
    return path


# ------------------------------------------------------------------------------------------------ damaged videos
#: bits of the frame number drawn as white/black 16x16 squares along the top row by :func:`numbered_frames`
NUMBER_BITS = 8


def numbered_frames(n: int, size: tuple[int, int] = (120, 160)) -> list[np.ndarray]:
    """``n`` BGR frames over :func:`background`, each carrying its index as ``NUMBER_BITS`` squares on the top row
    (white = 1, most significant first) that survive JPEG: :func:`frame_number` reads it back."""
    bg = background(*size)[:, :, ::-1].copy()
    return stamp_numbers([bg] * n)


def frame_number(frame: np.ndarray) -> int:
    """The index drawn by :func:`numbered_frames` into ``frame`` (BGR)."""
    bits = [frame[4:16, 6 + 18 * b : 18 + 18 * b].mean() > 127 for b in range(NUMBER_BITS)]
    return int(sum(int(v) << (NUMBER_BITS - 1 - b) for b, v in enumerate(bits)))


def truncated_copy(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    """``dst`` = the first ``fraction`` of ``src``'s bytes (a download or copy cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def overwritten_copy(src: Path, dst: Path, at: float = 0.5, fraction: float = 0.1, seed: int = 0) -> Path:
    """``dst`` = ``src`` with ``fraction`` of its bytes, from ``at`` of its length on, overwritten by random bytes
    (a damaged stretch of disk or transfer)."""
    data = bytearray(Path(src).read_bytes())
    a, n = int(len(data) * at), int(len(data) * fraction)
    data[a : a + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def stamp_numbers(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Copies of BGR ``frames`` with each one's index drawn on its top row as :func:`numbered_frames` does."""
    out = []
    for i, f in enumerate(frames):
        g = f.copy()
        for b in range(NUMBER_BITS):
            g[2:18, 4 + 18 * b : 20 + 18 * b] = 255 if (i >> (NUMBER_BITS - 1 - b)) & 1 else 0
        out.append(g)
    return out


class StampedMOTDetector:
    """A detector that looks at the pixels: it reads the frame's own index from its stamp (:func:`stamp_numbers`)
    and returns that frame's boxes of a MOTChallenge ``det.txt``, whatever index the reader gave the frame — so a
    reader that numbers frames wrongly after damage puts the boxes on the wrong frame, as a real detector would."""

    def __init__(self, path: str | Path, frame_offset: int = 1, min_score: float = 0.0):
        from vidreid.video.detect import MOTFileDetector

        self.inner = MOTFileDetector(path, frame_offset=frame_offset, min_score=min_score)

    def __call__(self, frame: np.ndarray, frame_index: int):
        return self.inner(frame, frame_number(frame))
