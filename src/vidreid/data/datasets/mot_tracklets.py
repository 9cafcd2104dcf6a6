"""Real video tracklets with identity labels, cut from a MOTChallenge sequence's ground truth (e.g. MOT15
PETS09-S2L1 with the PETS 2009 ``vtest.avi``, or TUD-Campus with its mp4): the first set in the suite whose
tracklets are consecutive frames of real video, for the temporal aggregators.

Protocol (one camera, so time stands in for the second camera):

1. time segments: ``split="person"`` (default) cuts each person's own time in the scene into ``num_segments``
   equal parts (by box count: every person is seen in every segment); ``split="time"`` cuts the video into
   ``num_segments`` equal parts (only people present across a boundary can be matched). ``boundary_gap`` boxes
   on each side of a boundary are dropped, so a query never ends one frame before its gallery match begins;
2. each ground-truth track (boxes with ``conf != 0``) is cut where it is interrupted (a gap of more than
   ``max_gap`` frames: an occlusion or a re-entry), at the segment boundaries, and into chunks of at most
   ``chunk_len`` consecutive boxes; pieces shorter than ``min_len`` are dropped;
3. the segment index is the tracklet's camera id, so the cross-camera protocol of the evaluation holds: a query
   never matches a tracklet of its own segment; query = the tracklets of segment 0 whose person also appears in
   a later segment; gallery = every tracklet of the later segments. No training set (evaluation only).

Crops are the ground-truth boxes (clipped to the frame), cut from the decoded video once and cached as JPEGs under
``cache_dir/<sequence>/`` (never in the repository); a manifest records the ground truth and video they came from
and the cache is rebuilt when either changes.

``background="suppress"`` greys out each crop's background pixels before caching (a separate cache folder): the
static camera's background is the per-pixel median of the video's frames (of ``frame_range`` when set), and a
crop pixel within ``background_threshold`` of it is set to the ImageNet mean colour
(:func:`vidreid.video.background.suppress_background`). Video only, no labels: the same can be done on any footage
of a static camera. Measured in docs/results.md ("Background suppression").
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from vidreid.data.tracklet import ReIDDataset, Tracklet, require_paths
from vidreid.video.mot import merge_gt_persons, person_ids, persons_of, read_mot, resolve_gt, sequence_video

__all__ = ["MOTTracklets", "cut_tracklets"]

LAYOUT = """sequence/gt/gt.txt (MOTChallenge: frame,id,left,top,width,height,conf,...; 1-based frames) and
sequence/seqinfo.ini (optional); video: the sequence's video file (MOT frame f = video frame f-1)"""


def cut_tracklets(gt: np.ndarray, num_frames: int, chunk_len: int = 16, num_segments: int = 2, min_len: int = 4,
                  max_gap: int = 1, split: str = "person", boundary_gap: int = 8) -> list[dict]:  # fmt: skip
    """The tracklets of step 1-2 of the module docstring, without any image: ``[{pid, segment, frames (0-based
    video frames), boxes ((n, 4) x1, y1, x2, y2)}]`` in order of (segment, pid, first frame).

    Args:
        gt: ``(N, >=6)`` MOT rows (1-based frames; a 7th column ``conf`` of 0 drops the box).
        num_frames: video length; with ``split="time"`` segment ``s`` holds frames ``[s * L, (s + 1) * L)``,
            ``L = ceil(num_frames / num_segments)``; with ``split="person"`` a person's box ``k`` of ``n`` (in
            time order) is in segment ``floor(k * num_segments / n)``.
        chunk_len: longest tracklet (boxes). num_segments: time segments (camera ids). min_len: shortest tracklet
            kept. max_gap: a larger step between consecutive frames of a track starts a new tracklet.
        boundary_gap: boxes dropped on each side of every segment boundary.
    Raises:
        ValueError: a parameter out of range.
    """
    if chunk_len < 1 or min_len < 1 or num_segments < 1 or max_gap < 1 or num_frames < 1:
        raise ValueError(f"cut_tracklets: expected chunk_len, min_len, num_segments, max_gap, num_frames >= 1, got "
                         f"{chunk_len}, {min_len}, {num_segments}, {max_gap}, {num_frames}")  # fmt: skip
    if split not in ("person", "time") or boundary_gap < 0:
        raise ValueError(f"cut_tracklets: split must be 'person' or 'time' and boundary_gap >= 0, got {split!r}, "
                         f"{boundary_gap}")  # fmt: skip
    if min_len > chunk_len:
        raise ValueError(f"min_len={min_len} > chunk_len={chunk_len}: no tracklet could be kept")
    seg_len = math.ceil(num_frames / num_segments)
    keep = gt[:, 6] != 0 if gt.shape[1] > 6 else np.ones(len(gt), bool)
    out = []
    for pid in np.unique(gt[keep, 1]).astype(int):
        rows = gt[keep & (gt[:, 1] == pid)]
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        frames = rows[:, 0].astype(np.int64) - 1
        boxes = np.stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]], axis=1)
        if split == "time":
            seg = frames // seg_len
        else:
            seg = np.arange(len(frames)) * num_segments // len(frames)
        ok = np.ones(len(frames), bool)
        for b in np.flatnonzero(np.diff(seg) != 0) + 1:  # first box of a new segment
            ok[max(0, b - boundary_gap) : b + boundary_gap] = False
        breaks = np.flatnonzero((np.diff(frames) > max_gap) | (np.diff(seg) != 0) | (np.diff(ok) != 0)) + 1
        for run in np.split(np.arange(len(frames)), breaks):
            if not ok[run[0]]:
                continue
            for i in range(0, len(run), chunk_len):
                piece = run[i : i + chunk_len]
                if len(piece) >= min_len:
                    out.append(dict(pid=int(pid), segment=int(seg[piece[0]]), frames=frames[piece],
                                    boxes=boxes[piece]))  # fmt: skip
    out.sort(key=lambda t: (t["segment"], t["pid"], int(t["frames"][0])))
    return out


def _crop_all(video: Path, tracklets: list[dict], root: Path, quality: int, background: np.ndarray | None = None,
              threshold: float = 45.0) -> None:
    """Decode ``video`` once and write every tracklet's box crops to ``root/<seg>/<pid>_<first frame>/<frame>.jpg``
    (with ``background`` ``(H, W, 3)`` BGR: the background pixels suppressed, :func:`suppress_background`)."""
    import cv2

    from vidreid.video.background import suppress_background

    want: dict[int, list[tuple[Path, np.ndarray]]] = {}
    for t in tracklets:
        folder = root / _folder(t)
        folder.mkdir(parents=True, exist_ok=True)
        for f, b in zip(t["frames"].tolist(), t["boxes"]):
            want.setdefault(f, []).append((folder / f"{f:06d}.jpg", b))
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {video} (expected a video file OpenCV can decode)")
    try:
        idx, last = 0, max(want) if want else -1
        while idx <= last:
            ok, frame = cap.read()
            if not ok:
                raise ValueError(f"video {video} ends at frame {idx} but the ground truth has boxes up to video "
                                 f"frame {last} (MOT frame {last + 1}); expected the sequence's own video")  # fmt: skip
            h, w = frame.shape[:2]
            if background is not None and background.shape != frame.shape:
                raise ValueError(f"video {video}: frame {idx} is {w}x{h} but the background image "
                                 f"{background.shape[1]}x{background.shape[0]}")  # fmt: skip
            for path, (x1, y1, x2, y2) in want.get(idx, []):
                a, b = int(max(0, math.floor(x1))), int(max(0, math.floor(y1)))
                c, d = int(min(w, math.ceil(x2))), int(min(h, math.ceil(y2)))
                box = np.s_[b:d, a:c] if c - a >= 2 and d - b >= 2 else np.s_[:2, :2]
                crop = frame[box]
                if background is not None:
                    crop = suppress_background(crop, background[box], threshold)[0]
                cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
            idx += 1
    finally:
        cap.release()


def _folder(t: dict) -> str:
    return f"seg{t['segment']}/{t['pid']:04d}_{int(t['frames'][0]):06d}"


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


class MOTTracklets(ReIDDataset):
    """Video re-ID tracklets from a MOT sequence's ground truth (see the module docstring for the protocol).

    Args:
        sequence: the MOT sequence folder (``gt/gt.txt``, optional ``seqinfo.ini``), e.g.
            ``../shared/data/mot15/PETS09-S2L1``.
        video: its video file; ``None``: the single ``*.mp4``/``*.avi`` inside ``sequence``.
        cache_dir: where the crops are written (``<cache_dir>/<sequence name>/``).
        chunk_len, num_segments, min_len, max_gap, split, boundary_gap: as :func:`cut_tracklets`.
        jpeg_quality: of the cached crops.
        name: dataset name in the statistics.
        frame_range: ``[first, end)`` 0-based video frames: only the ground truth of these frames is used (e.g.
            ``[397, 795]``: the second half of PETS09-S2L1, the held-out test of a model adapted on the first
            half); ``None``: all. Segments (``split``) are then cut within the range.
        background: ``"keep"`` (the crops as cut) or ``"suppress"`` (background pixels greyed out; module
            docstring). background_threshold: colour distance (8-bit units) above which a pixel is the person's.
            background_step: the median background takes every this many frames.
        persons: ``None`` (default): the pid is the ground-truth id, one per appearance (MOTChallenge gives a
            person who leaves and comes back a new id); ``"auto"``: the person-level pid of the shipped annotation
            (:data:`vidreid.video.mot.PERSONS`; a sequence it does not list keeps its ids), or a list of id groups.
            The tracklets, segments and crops are the same either way; only the labels differ, so a query's
            other appearances of the same person count as right matches.
    Raises:
        FileNotFoundError: a missing ground truth or video (names the path and the layout).
        ValueError: a malformed ``gt.txt`` (file:line), an undecodable or too short video, no query left, an
            unknown ``background``, a ``persons`` group that does not fit the ground truth.
    """

    def __init__(self, sequence: str | Path, video: str | Path | None = None, cache_dir: str | Path = ".cache",
                 chunk_len: int = 16, num_segments: int = 2, min_len: int = 4, max_gap: int = 1,
                 split: str = "person", boundary_gap: int = 8, jpeg_quality: int = 95,
                 name: str = "mot_tracklets", frame_range: tuple[int, int] | None = None, background: str = "keep",
                 background_threshold: float = 45.0, background_step: int = 4,
                 persons: str | list | None = None):  # fmt: skip
        import cv2

        if background not in ("keep", "suppress"):
            raise ValueError(f"background={background!r}: expected 'keep' or 'suppress'")

        sequence = Path(sequence)
        gt_path = sequence / "gt" / "gt.txt"
        require_paths([sequence, gt_path], LAYOUT)
        video = sequence_video(sequence) if video is None else Path(video)
        require_paths([video], LAYOUT)
        cap = cv2.VideoCapture(str(video))
        num_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        if num_frames <= 0:
            raise ValueError(f"cannot read the frame count of video {video} (expected a video OpenCV can decode)")
        gt = read_mot(gt_path)[:, :7]  # frame, id, left, top, width, height, conf
        groups = persons_of(resolve_gt(sequence).name, persons)
        if groups:
            merge_gt_persons(gt, groups, gt_path)  # raises on a group that does not fit
        person = person_ids(groups or [])
        suffix = ""
        if frame_range is not None:
            first, end = (int(v) for v in frame_range)
            if not 0 <= first < end:
                raise ValueError(f"frame_range={list(frame_range)}: expected [first, end) with 0 <= first < end")
            gt = gt[(gt[:, 0] - 1 >= first) & (gt[:, 0] - 1 < end)]
            gt_time = gt.copy()
            gt_time[:, 0] -= first  # split="time" cuts the range, not the video
            suffix = f"_f{first}-{end}"
        cut = cut_tracklets(gt if frame_range is None else gt_time, num_frames if frame_range is None else
                            min(end, num_frames) - first, chunk_len, num_segments, min_len, max_gap, split,
                            boundary_gap)  # fmt: skip
        if frame_range is not None:
            for t in cut:
                t["frames"] = t["frames"] + first
        if background == "suppress":
            suffix += f"_bg{background_threshold:g}-{int(background_step)}"
        root = Path(cache_dir) / f"mot_tracklets_{sequence.name}{suffix}"
        manifest = dict(gt=_digest(gt_path), video=str(video.resolve()), video_bytes=video.stat().st_size,
                        chunk_len=chunk_len, num_segments=num_segments, min_len=min_len, max_gap=max_gap,
                        split=split, boundary_gap=boundary_gap, jpeg_quality=jpeg_quality, frame_range=suffix, tracklets=len(cut), boxes=int(sum(len(t["frames"]) for t in cut)))  # fmt: skip
        mpath = root / "manifest.json"
        if not (mpath.is_file() and json.loads(mpath.read_text()) == manifest):
            import shutil

            shutil.rmtree(root, ignore_errors=True)
            bg_image = None
            if background == "suppress":
                from vidreid.video.background import median_background

                bg_image = median_background(video, background_step, None if frame_range is None else (first, end))
            _crop_all(video, cut, root, int(jpeg_quality), bg_image, float(background_threshold))
            mpath.write_text(json.dumps(manifest, indent=1))
        items = [Tracklet(tuple(root / _folder(t) / f"{f:06d}.jpg" for f in t["frames"].tolist()),
                          person.get(t["pid"], t["pid"]),
                          t["segment"], tuple(int(f) for f in t["frames"])) for t in cut]  # fmt: skip
        later = {t.pid for t in items if t.camid > 0}
        query = [t for t in items if t.camid == 0 and t.pid in later]
        gallery = [t for t in items if t.camid > 0]
        if not query:
            raise ValueError(f"{gt_path}: no person of the first of {num_segments} time segments appears in a later "
                             f"one (expected a sequence where people stay longer, or fewer segments)")  # fmt: skip
        super().__init__(
            name=name, train=[], query=query, gallery=gallery,
            extra=dict(sequence=str(sequence), video=str(video), cache=str(root), num_frames=num_frames, split=split,
                       background=background, persons=groups or None,
                       num_segments=num_segments, query_in_gallery=False),
        )  # fmt: skip
