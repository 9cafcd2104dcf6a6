"""PRID-2011 (Hirzer et al., SCIA 2011), multi-shot part; also reads any set in the same layout (PKU-Reid,
conf/dataset/pku_reid.yaml).

Layout (docs/methods.md §0.1)::

    root/multi_shot/cam_a/<person>/*.png
    root/multi_shot/cam_b/<person>/*.png
    root/splits_prid2011.json        list of {"train": [person, ...], "test": [person, ...]} (10 splits)

The split file must exist (the standard one covers the 178 persons with >= 27 frames in both cameras).
"""

from __future__ import annotations

from pathlib import Path

from vidreid.data.datasets._layout import read_split_file, two_camera_split
from vidreid.data.tracklet import ReIDDataset, require_paths

LAYOUT = """root/multi_shot/cam_a/<person>/*.png, root/multi_shot/cam_b/<person>/*.png
split_file (default root/splits_prid2011.json): [{"train": [person, ...], "test": [person, ...]}, ...]"""


class PRID2011(ReIDDataset):
    """PRID-2011 multi-shot video re-ID: per split 89 train and 89 test persons, cameras a and b.

    Args:
        root: dataset folder (see module docstring).
        split_id: which split of the split file (0..9 for the standard files).
        split_file: the split JSON; a relative path is taken relative to ``root``
            (default ``splits_prid2011.json``).
        min_frames: drop tracklets shorter than this (0 = keep all, the default).
        name: dataset name reported in statistics (``pku_reid`` for the PKU-Reid config).

    Train = both cameras of the split's train persons (pids relabelled 0..N-1); query = cam_a tracklets of the
    test persons (camid 0), gallery = cam_b tracklets (camid 1); test pids = the person folder's number.
    Frames in natural order (STAFormer's loader leaves ``glob`` order unsorted).

    Raises:
        FileNotFoundError: a layout path, the split file or a person folder is missing.
        ValueError: a malformed split file or ``split_id`` out of range.
    """

    def __init__(
        self,
        root: str | Path,
        split_id: int = 0,
        split_file: str | Path | None = None,
        min_frames: int = 0,
        name: str = "prid2011",
    ):
        root = Path(root)
        split_path = Path(split_file) if split_file is not None else Path("splits_prid2011.json")
        if not split_path.is_absolute():
            split_path = root / split_path
        cams = (root / "multi_shot" / "cam_a", root / "multi_shot" / "cam_b")
        require_paths([root, *cams, split_path], LAYOUT)
        split = read_split_file(split_path, split_id)
        train, query, gallery = two_camera_split(cams, split["train"], split["test"], min_frames=min_frames)
        super().__init__(
            name=name,
            train=train,
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), split_file=str(split_path), split_id=split_id, query_in_gallery=False),
        )
