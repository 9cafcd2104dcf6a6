"""iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014).

Layout (docs/methods.md §0.1)::

    root/i-LIDS-VID/sequences/cam1/<person>/*.png
    root/i-LIDS-VID/sequences/cam2/<person>/*.png
    root/train-test people splits/train_test_splits_ilidsvid.mat      ls_set (10, 300)

``ls_set[k]`` holds 1-based indices into the *sorted* list of ``cam1`` person folders; the first half are
the test persons, the second half the training persons (STAFormer's loader maps them through an unsorted
``os.listdir`` and slices with a float; both are fixed here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from vidreid.data.datasets._layout import list_dir, two_camera_split
from vidreid.data.tracklet import ReIDDataset, require_paths

LAYOUT = """root/i-LIDS-VID/sequences/cam1/<person>/*.png, root/i-LIDS-VID/sequences/cam2/<person>/*.png
root/train-test people splits/train_test_splits_ilidsvid.mat  (ls_set: splits x persons, 1-based)"""

SPLIT_MAT = Path("train-test people splits") / "train_test_splits_ilidsvid.mat"


def read_ls_set(path: Path) -> np.ndarray:
    """``ls_set`` as an ``(num_splits, num_persons)`` int64 array of 1-based person indices.

    Raises:
        ValueError: if the variable is missing, not 2-D, or has an odd number of persons per split.
    """
    mat = loadmat(str(path))
    if "ls_set" not in mat:
        raise ValueError(f"{path}: no variable 'ls_set'")
    ls_set = np.asarray(mat["ls_set"]).astype(np.int64)
    if ls_set.ndim != 2 or ls_set.shape[1] % 2:
        raise ValueError(
            f"{path}: ls_set has shape {ls_set.shape}, expected (splits, persons) with an even person count"
        )
    return ls_set


class ILIDSVID(ReIDDataset):
    """iLIDS-VID: 300 persons x 2 cameras; each split has 150 train and 150 test persons.

    Args:
        root: dataset folder (see module docstring).
        split_id: which of the 10 splits (0..9).

    Train = both cameras of the training persons (pids relabelled 0..149); query = cam1 sequences of the
    test persons, gallery = cam2 sequences of the test persons (camid 0 / 1; pid = the person folder's
    number). Frames in natural order.

    Raises:
        FileNotFoundError: a layout path or a person folder is missing.
        ValueError: ``split_id`` out of range, or split indices outside the person list.
    """

    def __init__(self, root: str | Path, split_id: int = 0):
        root = Path(root)
        seq = root / "i-LIDS-VID" / "sequences"
        cams = (seq / "cam1", seq / "cam2")
        require_paths([root, *cams, root / SPLIT_MAT], LAYOUT)
        ls_set = read_ls_set(root / SPLIT_MAT)
        if not 0 <= split_id < len(ls_set):
            raise ValueError(f"split_id={split_id} out of range: {root / SPLIT_MAT} holds {len(ls_set)} splits")
        persons = list_dir(cams[0], dirs=True)
        idx = ls_set[split_id] - 1
        if idx.min() < 0 or idx.max() >= len(persons):
            raise ValueError(
                f"{root / SPLIT_MAT}: split {split_id} indexes persons {idx.min() + 1}..{idx.max() + 1} "
                f"but {cams[0]} holds {len(persons)} person folders"
            )
        half = len(idx) // 2
        test_names = [persons[i] for i in idx[:half].tolist()]
        train_names = [persons[i] for i in idx[half:].tolist()]
        train, query, gallery = two_camera_split(cams, train_names, test_names)
        super().__init__(
            name="ilidsvid",
            train=train,
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), split_id=split_id, query_in_gallery=False),
        )
