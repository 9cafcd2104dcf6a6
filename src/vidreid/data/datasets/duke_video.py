"""DukeMTMC-VideoReID (Wu et al., CVPR 2018); Occluded-DukeMTMC-VideoReID shares the layout (occluded_duke_video.py).

Layout (docs/methods.md §0.1; github.com/Yu-Wu/DukeMTMC-VideoReID README)::

    root/{train,query,gallery}/<pid4>/<tracklet4>/<frame>.jpg

Frame names: ``0001_C6_F0099_X30823.jpg`` (current) or ``0001C6F0099X30823.jpg`` (older, no underscores):
pid 0001, camera 6, ``F0099`` = 99th frame within the tracklet, ``X30823`` = frame 30,823 of camera 6's
whole video. Frames are ordered by the F number (numerically: ``F10000`` after ``F9999``); the X numbers
become ``frame_ids`` (global per camera).
"""

from __future__ import annotations

import re
from pathlib import Path

from vidreid.data.datasets._layout import chunk_all, frame_paths, gc_paused, list_dir
from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel, require_paths

LAYOUT = """root/{train,query,gallery}/<pid4>/<tracklet4>/<frame>.jpg
frame names 0001_C6_F0099_X30823.jpg (or the older 0001C6F0099X30823.jpg)"""

_FRAME = re.compile(r"^(-?\d+)_?C(\d+)_?F(\d+)_?X(\d+)", re.IGNORECASE)


def parse_frame_name(name: str) -> tuple[int, int, int, int]:
    """``(pid, camera, frame_in_tracklet, global_frame)`` of a Duke-Video frame name; camera is 1-based.

    Raises:
        ValueError: if ``name`` matches neither naming format.
    """
    m = _FRAME.match(name)
    if m is None:
        raise ValueError(f"frame name {name!r} is not of the form 0001_C6_F0099_X30823.jpg or 0001C6F0099X30823.jpg")
    pid, cam, f, x = (int(g) for g in m.groups())
    return pid, cam, f, x


def read_tracklet(folder: Path, pid: int) -> Tracklet | None:
    """The frames of one tracklet folder in F order (``None`` if it holds no image).

    Raises:
        ValueError: a frame name that does not parse, or frames from more than one camera.
    """
    names = list_dir(folder)
    if not names:
        return None
    parsed = []
    for n in names:
        _, cam, f, x = parse_frame_name(n)
        parsed.append((f, n, cam, x))
    parsed.sort()
    cams = {p[2] for p in parsed}
    if len(cams) != 1:
        raise ValueError(f"tracklet {folder} mixes cameras {sorted(cams)}")
    cam = cams.pop()
    if cam < 1:
        raise ValueError(f"tracklet {folder}: camera {cam}, expected 1-based camera numbers")
    return Tracklet(frame_paths(folder, [p[1] for p in parsed]), pid, cam - 1, tuple(p[3] for p in parsed))


def read_split(split_dir: Path) -> tuple[list[Tracklet], int]:
    """All tracklets under ``split_dir/<pid4>/<tracklet4>/`` in sorted folder order, and the number of empty
    tracklet folders skipped. The pid is the ``<pid4>`` folder name."""
    out, empty = [], 0
    for pid_name in list_dir(split_dir, dirs=True):
        if not pid_name.lstrip("-").isdigit():
            raise ValueError(f"{split_dir / pid_name}: expected a numeric person folder such as 0001")
        pid_dir = split_dir / pid_name
        for tid in list_dir(pid_dir, dirs=True):
            t = read_tracklet(pid_dir / tid, int(pid_name))
            if t is None:
                empty += 1
            else:
                out.append(t)
    return out, empty


class DukeVideo(ReIDDataset):
    """DukeMTMC-VideoReID: 702 train ids (2,196 tracklets); 702 queries; 2,636 gallery tracklets.

    Args:
        root: dataset folder holding ``train/``, ``query/``, ``gallery/``.
        train_chunk: cut training tracklets into consecutive chunks of this many frames, the last chunk
            taking the remainder (STAFormer uses 32); 0 = whole tracklets (PSTA).

    Train pids are relabelled to 0..N-1; cameras (C1..C8) become 0..7; queries are not appended to the
    gallery. ``frame_ids`` holds the X numbers (global frame of the camera's video).

    Raises:
        FileNotFoundError: a split folder is missing (the message names it and the expected layout).
        ValueError: an unparseable frame name, non-numeric person folder, or a tracklet mixing cameras.
    """

    dataset_name = "duke_video"

    def __init__(self, root: str | Path, train_chunk: int = 0):
        root = Path(root)
        require_paths([root, root / "train", root / "query", root / "gallery"], LAYOUT)
        with gc_paused():
            train, e1 = read_split(root / "train")
            query, e2 = read_split(root / "query")
            gallery, e3 = read_split(root / "gallery")
        train = chunk_all(relabel(train), train_chunk)
        super().__init__(
            name=self.dataset_name,
            train=train,
            query=query,
            gallery=gallery,
            extra=dict(
                root=str(root), train_chunk=train_chunk, empty_tracklet_folders=e1 + e2 + e3, query_in_gallery=False
            ),
        )
