"""Video reading stage: open a video with OpenCV (any container/codec its FFmpeg backend decodes), report its
frame rate / size / length, and iterate over its frames with a stride.

Errors name the file: a missing path, a file OpenCV cannot open or decode, and a video with no frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VideoInfo", "iter_frames", "probe_video", "read_frames"]


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("vidreid.video needs OpenCV: pip install -c constraints.txt -e '.[video]'") from e
    return cv2


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds.

    Attributes:
        path: the file. fps: frames per second (container value; ``default_fps`` when it reports none).
        num_frames: frames actually decodable (counted by decoding when the container's count is missing).
        width, height: frame size in pixels.
    """

    path: Path
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        """Length in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps


def _open(path: str | Path):
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path} (expected a video file OpenCV can decode, e.g. .avi/.mp4)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"cannot open video {path}: OpenCV found no decoder for it (expected a video file, "
                         f"e.g. MJPEG/XVID .avi or H.264 .mp4)")  # fmt: skip
    return cap


def probe_video(path: str | Path, default_fps: float = 25.0, count: bool = False) -> VideoInfo:
    """Open ``path`` and decode its first frame; return its :class:`VideoInfo`.

    Args:
        path: video file. default_fps: used when the container reports no frame rate.
        count: decode the whole video to count frames (else the container's frame count is trusted when > 0).
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: OpenCV cannot open it, or not a single frame decodes (empty / corrupt video).
    """
    cv2 = _cv2()
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise ValueError(f"video {path} has no decodable frame (empty or corrupt file; expected at least one "
                             f"frame)")  # fmt: skip
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count or n <= 0:
            n = 1
            while cap.grab():
                n += 1
    finally:
        cap.release()
    fps = fps if fps > 0 and np.isfinite(fps) else float(default_fps)
    return VideoInfo(Path(path), fps, n, int(frame.shape[1]), int(frame.shape[0]))


def iter_frames(
    path: str | Path, stride: int = 1, start: int = 0, max_frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, frame)`` for frames ``start, start+stride, ...``: ``frame`` is ``(H, W, 3)`` uint8 BGR.

    Frames between the kept ones are grabbed but not decoded (``VideoCapture.grab``), so a stride saves the
    colour conversion as well as the detector. ``max_frames`` caps the number of *yielded* frames.

    Raises:
        FileNotFoundError / ValueError: as :func:`probe_video`; ValueError also for ``stride < 1`` or ``start < 0``.
    """
    if stride < 1:
        raise ValueError(f"frame stride must be >= 1, got {stride}")
    if start < 0:
        raise ValueError(f"start frame must be >= 0, got {start}")
    cap = _open(path)
    try:
        idx, yielded = 0, 0
        while max_frames is None or yielded < max_frames:
            if idx >= start and (idx - start) % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield idx, frame
                yielded += 1
            elif not cap.grab():
                break
            idx += 1
    finally:
        cap.release()


def read_frames(path: str | Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (BGR uint8), decoded in one sequential pass. Missing indices are absent."""
    want = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not want:
        return out
    last = max(want)
    for idx, frame in iter_frames(path):
        if idx in want:
            out[idx] = frame
        if idx >= last:
            break
    return out
