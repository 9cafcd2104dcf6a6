"""Market-1501 (Zheng et al., ICCV 2015) as one-frame tracklets, with st-ReID's global timestamps.

Layout::

    root/bounding_box_train/*.jpg   root/bounding_box_test/*.jpg   root/query/*.jpg

A name ``0002_c1s1_000451_03.jpg`` is pid 0002, camera 1, sequence 1, frame 451 of that sequence,
detection 03. pid ``-1`` = junk (dropped), pid ``0000`` = distractor (kept in the gallery).

Timestamps (docs/methods.md §5.2; st-ReID ``prepare.py``): a frame number is made global per camera by adding
the lengths of the camera's earlier sequences, ``frame' = frame + sum_{i < s} M[c][i]``.
"""

from __future__ import annotations

import re
from pathlib import Path

from vidreid.data.datasets._layout import image_folder_tracklets
from vidreid.data.tracklet import ReIDDataset, relabel, require_paths

LAYOUT = (
    "root/bounding_box_train/*.jpg, root/bounding_box_test/*.jpg, root/query/*.jpg (names like 0002_c1s1_000451_03.jpg)"
)

#: Largest frame number of each (camera, sequence) of Market-1501, cameras 1..6 (st-ReID prepare.py).
SEQUENCE_LENGTHS: tuple[tuple[int, ...], ...] = (
    (72681, 74546, 74881, 74661, 74891, 54346),
    (163691, 164677, 98102),
    (161708, 161769, 104469),
    (72107, 72373, 74810, 74541, 74910, 50616),
    (161095, 161724, 103487),
    (87551, 131268, 95817, 30952),
)

_NAME = re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d+)_(\d+)")


def global_frame(camera: int, sequence: int, frame: int) -> int:
    """Frame number made global per camera: ``frame + sum(SEQUENCE_LENGTHS[camera-1][:sequence-1])``.

    Args:
        camera, sequence: 1-based, as in the file name.
        frame: the frame number within the sequence.

    Raises:
        ValueError: camera outside 1..6 or a sequence the camera does not have.
    """
    if not 1 <= camera <= len(SEQUENCE_LENGTHS):
        raise ValueError(f"Market-1501 camera {camera} outside 1..{len(SEQUENCE_LENGTHS)}")
    lengths = SEQUENCE_LENGTHS[camera - 1]
    if not 1 <= sequence <= len(lengths):
        raise ValueError(f"Market-1501 camera {camera} has no sequence {sequence} (known: 1..{len(lengths)})")
    return frame + sum(lengths[: sequence - 1])


def parse_market_name(name: str) -> tuple[int, int, int]:
    """``(pid, camid 0-based, global frame)`` of a Market-1501 crop name.

    Example: ``0007_c2s3_070952_01.jpg`` -> ``(7, 1, 70952 + 163691 + 164677)``.

    Raises:
        ValueError: a name not of the form ``pid_cXsY_frame_nn.jpg``.
    """
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"Market-1501 name {name!r} is not of the form 0002_c1s1_000451_03.jpg")
    pid, cam, seq, frame = int(m[1]), int(m[2]), int(m[3]), int(m[4])
    return pid, cam - 1, global_frame(cam, seq, frame)


class Market1501(ReIDDataset):
    """Market-1501 images as one-frame tracklets: 751 train ids (12,936 images), 3,368 queries, 19,732 gallery.

    Args:
        root: dataset folder (see module docstring).

    Train pids are relabelled 0..N-1; cameras become 0..5; ``frame_ids = (global frame,)``.

    Raises:
        FileNotFoundError: a layout folder is missing (the message names it and the expected layout).
        ValueError: a file name that does not parse.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        dirs = [root / "bounding_box_train", root / "query", root / "bounding_box_test"]
        require_paths([root, *dirs], LAYOUT)
        (train, j1), (query, j2), (gallery, j3) = (image_folder_tracklets(d, parse_market_name) for d in dirs)
        super().__init__(
            name="market1501",
            train=relabel(train),
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), junk_dropped=j1 + j2 + j3, query_in_gallery=False),
        )
