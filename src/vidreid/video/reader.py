"""Video reading stage: open a video with OpenCV (any container/codec its FFmpeg backend decodes), report its
frame rate / size / length, and iterate over its frames with a stride.

Errors name the file: a missing path, a file OpenCV cannot open or decode, and a video with no frames.

Damaged video is reported, never silent. OpenCV ends a read at the first frame it cannot decode, and its AVI
demuxer drops frames whose chunk headers are damaged without a word, numbering the next intact frame as the
lost one. :func:`iter_frames` steps over undecodable frames, numbers every frame by its position in the file
(for AVI: the packet counter ``CAP_PROP_PTS`` mapped through the file's ``idx1`` index, whose entries are checked
against the chunk headers on disk), and ends with a :class:`ReadReport`: the last frame decoded, the declared
frames that were not read and the ranges that were skipped.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FrameIterator", "ReadReport", "VideoInfo", "avi_frame_index", "iter_frames", "probe_video",
           "read_frames", "read_span"]  # fmt: skip

log = logging.getLogger(__name__)


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


@dataclass
class ReadReport:
    """What one pass over a video read, filled in while a :class:`FrameIterator` runs (final when it ends).

    Frame indices are 0-based positions in the file (MOTChallenge frame ``f`` = index ``f - 1``).

    Attributes:
        path: the video. declared: the container's frame count (``CAP_PROP_FRAME_COUNT``; 0 when it gives none).
        frames_read: frames decoded (the kept ones and those stepped over by the stride).
        last_frame: index of the last frame decoded (-1: none).
        skipped: inclusive ``(first, last)`` index ranges lost *between* decoded frames (undecodable frames, and
            for AVI frames whose chunks are damaged on disk).
        stopped_early: decoding ended before the declared count (truncated file or undecodable tail).
        capped: the reading stopped at ``max_frames`` (by request, not by damage).
        index_checked: frame positions come from the AVI ``idx1`` index checked against the file (else from the
            packet counter; a demuxer that drops frames silently, outside AVI, can then go unnoticed).
    """

    path: Path
    declared: int
    frames_read: int = 0
    last_frame: int = -1
    skipped: list[tuple[int, int]] = field(default_factory=list)
    stopped_early: bool = False
    capped: bool = False
    index_checked: bool = False

    @property
    def n_skipped(self) -> int:
        """Frames in the :attr:`skipped` ranges."""
        return sum(b - a + 1 for a, b in self.skipped)

    @property
    def missing(self) -> int:
        """Declared frames not read: the skipped ones, plus those after :attr:`last_frame` when decoding stopped
        early (a capped read counts only the skipped ones)."""
        tail = max(0, self.declared - 1 - self.last_frame) if self.stopped_early else 0
        return self.n_skipped + tail

    @property
    def damaged(self) -> bool:
        """Some declared frame was not read (:attr:`missing` > 0)."""
        return self.missing > 0

    def _skip(self, first: int, last: int) -> None:
        if last < first:
            return
        if self.skipped and self.skipped[-1][1] == first - 1:
            self.skipped[-1] = (self.skipped[-1][0], last)
        else:
            self.skipped.append((first, last))

    def message(self) -> str:
        """One line naming the video: last frame decoded, frames not read, skipped ranges."""
        rng = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.skipped[:10])
        more = f" (+{len(self.skipped) - 10} more ranges)" if len(self.skipped) > 10 else ""
        parts = [f"video {self.path}: {self.frames_read} of {self.declared} declared frames decoded, "
                 f"last frame decoded {self.last_frame}, {self.missing} declared frames not read"]  # fmt: skip
        if self.skipped:
            parts.append(f"skipped frames {rng}{more}")
        if self.stopped_early:
            parts.append(f"decoding stopped after frame {self.last_frame} (truncated or damaged file)")
        return "; ".join(parts)

    @classmethod
    def from_dict(cls, d: dict) -> ReadReport:
        """The report :meth:`to_dict` wrote."""
        return cls(Path(d["video"]), int(d["declared_frames"]), int(d["frames_read"]), int(d["last_frame"]),
                   [(int(a), int(b)) for a, b in d["skipped"]], bool(d["stopped_early"]), bool(d.get("capped", False)),
                   bool(d["index_checked"]))  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready fields (for ``summary.json``)."""
        return {"video": str(self.path), "declared_frames": self.declared, "frames_read": self.frames_read,
                "last_frame": self.last_frame, "missing": self.missing,
                "skipped": [[a, b] for a, b in self.skipped], "stopped_early": self.stopped_early,
                "capped": self.capped, "index_checked": self.index_checked}  # fmt: skip


def read_span(report: ReadReport | None, num_frames: int) -> int:
    """Frames ``[0, span)`` a pass over a video covered, for count windows, durations and render times: up to the
    last frame decoded when decoding stopped early (a truncated file), else the declared ``num_frames``."""
    if report is not None and report.stopped_early:
        return max(1, report.last_frame + 1)
    return int(num_frames)


def avi_frame_index(path: str | Path) -> tuple[list[int], int] | None:
    """The first video stream's frames in an AVI's ``idx1`` index, checked against the file.

    Each index entry's chunk header (id and size) is read at the offset the index gives; an entry whose header
    does not match lies in a damaged stretch of the file, which OpenCV's demuxer skips without counting. The
    layout follows the OpenDML/Microsoft AVI RIFF reference (``hdrl``/``strl``/``strh``, ``movi``, ``idx1``).

    Returns:
        ``(intact, n_indexed)``: the indices (0-based, file order) of the frames whose chunks are intact, and the
        number of indexed frames; ``None`` when the file is not an AVI or has no readable ``idx1`` (e.g. a truncated
        file: the index is at its end).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(12)[:4] != b"RIFF":
                return None
            f.seek(8)
            if f.read(4) != b"AVI ":
                return None
            size = path.stat().st_size
            pos, movi, idx1, video = 12, None, None, None
            while pos + 8 <= size:
                f.seek(pos)
                ck, n = struct.unpack("<4sI", f.read(8))
                if ck == b"LIST":
                    kind = f.read(4)
                    if kind == b"movi":
                        movi = pos + 8
                    elif kind == b"hdrl":
                        video = _avi_video_stream(f, pos + 12, pos + 8 + n)
                elif ck == b"idx1":
                    idx1 = (pos + 8, n)
                pos += 8 + n + (n & 1)
            if movi is None or idx1 is None or video is None:
                return None
            f.seek(idx1[0])
            raw = f.read(idx1[1] - idx1[1] % 16)
            ids = (b"%02ddc" % video, b"%02ddb" % video)
            entries = [(off, sz) for ck, _, off, sz in struct.iter_unpack("<4sIII", raw) if ck in ids]
            if not entries:
                return None
            base = movi if _chunk_at(f, movi + entries[0][0], ids, entries[0][1]) else 0  # relative or absolute
            intact = [i for i, (off, sz) in enumerate(entries) if _chunk_at(f, base + off, ids, sz)]
            return intact, len(entries)
    except (OSError, struct.error):
        return None


def _avi_video_stream(f, pos: int, end: int) -> int | None:
    """Number of the first ``vids`` stream in an AVI ``hdrl`` list (``strl`` lists in order)."""
    stream = 0
    while pos + 8 <= end:
        f.seek(pos)
        ck, n = struct.unpack("<4sI", f.read(8))
        if ck == b"LIST" and f.read(4) == b"strl":
            f.seek(pos + 12)
            sck, _ = struct.unpack("<4sI", f.read(8))
            if sck == b"strh" and f.read(4) == b"vids":
                return stream
            stream += 1
        pos += 8 + n + (n & 1)
    return None


def _chunk_at(f, pos: int, ids: tuple[bytes, bytes], size: int) -> bool:
    f.seek(pos)
    head = f.read(8)
    return len(head) == 8 and head[:4] in ids and struct.unpack("<I", head[4:])[0] == size


class FrameIterator(Iterator[tuple[int, np.ndarray]]):
    """Iterator over ``(frame_index, frame)`` of one video with its :class:`ReadReport` (``.report``).

    Frame positions: an AVI with an intact ``idx1`` index numbers each decoded frame by the index entry of its
    packet (``CAP_PROP_PTS`` counts the packets the demuxer returned; the entries whose chunks are damaged are the
    ones it skipped); an AVI without an index (e.g. truncated) uses ``CAP_PROP_PTS`` alone; other containers count
    decoded frames plus failed decodes. Up to ``max_failures`` failed grabs in a row are retried before the file
    is taken to end; the reading stops early when that happens before the declared frame count.
    """

    def __init__(self, path: str | Path, stride: int = 1, start: int = 0, max_frames: int | None = None,
                 max_failures: int = 16):  # fmt: skip
        if stride < 1:
            raise ValueError(f"frame stride must be >= 1, got {stride}")
        if start < 0:
            raise ValueError(f"start frame must be >= 0, got {start}")
        if max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {max_failures}")
        cv2 = _cv2()
        self.path = Path(path)
        self._cap = _open(path)
        declared = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.report = ReadReport(self.path, max(0, declared))
        self._args = (stride, start, max_frames, max_failures)
        self._gen = self._frames()

    def __next__(self) -> tuple[int, np.ndarray]:
        return next(self._gen)

    def close(self) -> None:
        """Release the capture (done when the iteration ends; call it after breaking out early)."""
        self._gen.close()
        self._cap.release()

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        cv2 = _cv2()
        stride, start, max_frames, max_failures = self._args
        cap, rep = self._cap, self.report
        avi = avi_frame_index(self.path)
        is_avi = avi is not None or self.path.suffix.lower() == ".avi"
        intact = avi[0] if avi is not None and avi[0] else None
        rep.index_checked = intact is not None
        if avi is not None and not rep.declared:
            rep.declared = avi[1]
        pts_prop = getattr(cv2, "CAP_PROP_PTS", None)
        count, failed, lost, yielded, prev = 0, 0, 0, 0, -1
        try:
            while max_frames is None or yielded < max_frames:
                if not cap.grab():
                    failed += 1
                    if failed > max_failures:
                        break
                    continue
                lost += failed
                pos = None
                if is_avi and pts_prop is not None:
                    pts = cap.get(pts_prop)
                    pos = int(pts) if pts is not None and pts >= 0 else None
                if pos is None:
                    pos = count + lost
                if intact is not None:
                    pos = intact[pos] if pos < len(intact) else intact[-1] + 1 + pos - len(intact)
                failed = 0
                if pos <= prev:  # a container whose counter went backwards: keep the order we decode in
                    pos = prev + 1
                rep._skip(prev + 1, pos - 1)
                prev = pos
                count += 1
                rep.frames_read, rep.last_frame = count, pos
                if pos >= start and (pos - start) % stride == 0:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        continue
                    yield pos, frame
                    yielded += 1
            else:
                rep.capped = True
            if not rep.capped and rep.declared and prev < rep.declared - 1:
                rep.stopped_early = True
        finally:
            cap.release()
        if rep.damaged:
            log.warning("%s", rep.message())


def iter_frames(
    path: str | Path, stride: int = 1, start: int = 0, max_frames: int | None = None, max_failures: int = 16
) -> FrameIterator:
    """Frames ``(frame_index, frame)`` for frames ``start, start+stride, ...``: ``frame`` is ``(H, W, 3)`` uint8 BGR.

    Frames between the kept ones are grabbed but not converted (``VideoCapture.grab``), so a stride saves the
    colour conversion as well as the detector. ``max_frames`` caps the number of *yielded* frames.

    Damaged video: a frame that fails to decode does not end the reading (up to ``max_failures`` failures in a
    row are retried), and a lost frame's index is never given to its successor (:class:`FrameIterator`). What was
    not read is in the returned iterator's ``report`` (:class:`ReadReport`) once the iteration ends; a warning
    naming the video is logged then.

    Returns:
        a :class:`FrameIterator` (iterate it, then read its ``report``).
    Raises:
        FileNotFoundError / ValueError: as :func:`probe_video`; ValueError also for ``stride < 1``, ``start < 0``
        or ``max_failures < 0``.
    """
    return FrameIterator(path, stride=stride, start=start, max_frames=max_frames, max_failures=max_failures)


def read_frames(path: str | Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (BGR uint8), decoded in one sequential pass. Missing indices are absent."""
    want = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not want:
        return out
    last = max(want)
    frames = iter_frames(path)
    for idx, frame in frames:
        if idx in want:
            out[idx] = frame
        if idx >= last:
            break
    frames.close()
    return out
