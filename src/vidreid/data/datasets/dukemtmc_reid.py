"""DukeMTMC-reID (Zheng et al., ICCV 2017) as one-frame tracklets, with global frame numbers.

Layout::

    root/bounding_box_train/*.jpg   root/bounding_box_test/*.jpg   root/query/*.jpg

A name ``0001_c2_f0046182.jpg`` is pid 0001, camera 2, frame 46,182 of camera 2's video: the frame number is
already global per camera (docs/methods.md §5.2), so it becomes ``frame_ids`` unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from vidreid.data.datasets._layout import image_folder_tracklets
from vidreid.data.tracklet import ReIDDataset, relabel, require_paths

LAYOUT = (
    "root/bounding_box_train/*.jpg, root/bounding_box_test/*.jpg, root/query/*.jpg (names like 0001_c2_f0046182.jpg)"
)

_NAME = re.compile(r"^(-?\d+)_c(\d+)_f(\d+)")


def parse_duke_name(name: str) -> tuple[int, int, int]:
    """``(pid, camid 0-based, global frame)`` of a DukeMTMC-reID crop name (``0001_c2_f0046182.jpg`` -> (1, 1, 46182)).

    Raises:
        ValueError: a name not of that form, or a camera outside 1..8.
    """
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"DukeMTMC-reID name {name!r} is not of the form 0001_c2_f0046182.jpg")
    pid, cam, frame = int(m[1]), int(m[2]), int(m[3])
    if not 1 <= cam <= 8:
        raise ValueError(f"DukeMTMC-reID name {name!r}: camera {cam} outside 1..8")
    return pid, cam - 1, frame


class DukeMTMCreID(ReIDDataset):
    """DukeMTMC-reID images as one-frame tracklets: 702 train ids (16,522 images), 2,228 queries, 17,661 gallery.

    Args:
        root: dataset folder (see module docstring).

    Train pids are relabelled 0..N-1; cameras become 0..7; ``frame_ids = (frame,)``.

    Raises:
        FileNotFoundError: a layout folder is missing (the message names it and the expected layout).
        ValueError: a file name that does not parse.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        dirs = [root / "bounding_box_train", root / "query", root / "bounding_box_test"]
        require_paths([root, *dirs], LAYOUT)
        (train, j1), (query, j2), (gallery, j3) = (image_folder_tracklets(d, parse_duke_name) for d in dirs)
        super().__init__(
            name="dukemtmc_reid",
            train=relabel(train),
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), junk_dropped=j1 + j2 + j3, query_in_gallery=False),
        )
