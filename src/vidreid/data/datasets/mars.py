"""MARS (Zheng et al., ECCV 2016): the official protocol files, no directory walk.

Layout (docs/methods.md §0.1)::

    root/bbox_train/<pid4>/<name>        e.g. bbox_train/0001/0001C1T0001F001.jpg
    root/bbox_test/<pid4>/<name>
    root/info/train_name.txt             one frame name per line, global order (509,914)
    root/info/test_name.txt              (681,089)
    root/info/tracks_train_info.mat      track_train_info  (8298, 4): start, end, pid, cam (1-based, inclusive)
    root/info/tracks_test_info.mat       track_test_info   (12180, 4); pid -1 = junk, 0 = distractor
    root/info/query_IDX.mat              query_IDX         (1, 1980): 1-based rows of track_test_info

Frame paths come from the name lists; the image folders are only checked to exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from vidreid.data.datasets._layout import frame_paths, gc_paused
from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel, require_paths

LAYOUT = """root/bbox_train/<pid4>/<name>.jpg, root/bbox_test/<pid4>/<name>.jpg
info_dir (default root/info)/{train_name.txt, test_name.txt, tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat}"""


def read_names(path: Path) -> list[str]:
    """Frame names of a MARS name list, one per line (``\\r\\n`` or ``\\n``), in file order."""
    return Path(path).read_bytes().decode("ascii").split()


def read_tracks(path: Path, key: str) -> np.ndarray:
    """``(N, 4)`` int64 rows ``(start, end, pid, cam)`` from a MARS ``.mat`` file (1-based, inclusive).

    Raises:
        ValueError: if the variable is missing or not ``(N, 4)``.
    """
    mat = loadmat(str(path))
    if key not in mat:
        raise ValueError(f"{path}: no variable {key!r} (has {sorted(k for k in mat if not k.startswith('__'))})")
    arr = np.asarray(mat[key]).astype(np.int64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{path}: {key} has shape {arr.shape}, expected (N, 4) rows of (start, end, pid, cam)")
    return arr


def _tracklets(rows: np.ndarray, names: list[str], folder: Path, what: str) -> list[Tracklet | None]:
    """One Tracklet per row (``None`` for junk rows, pid -1); checks the rows against the name list.

    Frames are the name-list slice ``start-1 .. end-1``, sorted: MARS names are fixed width
    (``0001C1T0001F001.jpg``), so lexicographic order is frame order.
    """
    n = len(names)
    starts, ends = rows[:, 0], rows[:, 1]
    bad = np.flatnonzero((starts < 1) | (ends > n) | (ends < starts))
    if bad.size:
        r = rows[bad[0]]
        raise ValueError(f"{what}: row {bad[0]} = {r.tolist()} is outside the {n} frame names (1-based, inclusive)")
    out: list[Tracklet | None] = []
    folders: dict[str, Path] = {}
    for i, (s, e, pid, cam) in enumerate(rows.tolist()):
        if pid == -1:
            out.append(None)
            continue
        chunk = names[s - 1 : e]
        first = chunk[0]
        if int(first[:4]) != pid or int(first[5]) != cam:
            raise ValueError(
                f"{what}: row {i} says pid={pid} cam={cam} but its first frame is {first} "
                "(name list and track info do not belong together)"
            )
        if not (1 <= cam <= 6):
            raise ValueError(f"{what}: row {i} has camera {cam}, expected 1..6")
        if any(a > b for a, b in zip(chunk, chunk[1:])):
            chunk = sorted(chunk)
        sub = folders.get(first[:4])
        if sub is None:
            sub = folders[first[:4]] = folder / first[:4]
        out.append(Tracklet(frame_paths(sub, chunk), pid, cam - 1))
    return out


class MARS(ReIDDataset):
    """MARS video re-ID: 625 train ids / 8298 tracklets; 1980 queries; 9330 gallery tracklets.

    Args:
        root: dataset folder holding ``bbox_train/`` and ``bbox_test/``.
        info_dir: folder with the five protocol files; default ``root/info``.
        append_query_to_gallery: declare the official protocol (STAFormer, PSTA): each query is ranked against
            the 9330 gallery tracklets plus the 1980 queries (11,310 items; a query's own entry is junk as same pid
            + same camera). Sets :attr:`query_in_gallery`; the metric appends the queries at ranking time, so
            ``gallery`` holds the 9330 and every tracklet is embedded once.

    Junk rows (pid -1) are dropped, distractors (pid 0) are kept in the gallery, train pids are relabelled
    to 0..624, cameras become 0-based. ``frame_ids`` stays ``None``: the F-number is per tracklet.

    Raises:
        FileNotFoundError: a layout path is missing (the message names it and the expected layout).
        ValueError: protocol files inconsistent with each other (row outside the name list, pid/camera of a
            row not matching its first frame name, query index out of range or pointing at a junk row).
    """

    def __init__(self, root: str | Path, info_dir: str | Path | None = None, append_query_to_gallery: bool = True):
        root = Path(root)
        info = Path(info_dir) if info_dir is not None else root / "info"
        files = {
            k: info / k
            for k in (
                "train_name.txt",
                "test_name.txt",
                "tracks_train_info.mat",
                "tracks_test_info.mat",
                "query_IDX.mat",
            )
        }
        require_paths([root, root / "bbox_train", root / "bbox_test", *files.values()], LAYOUT)

        train_rows = read_tracks(files["tracks_train_info.mat"], "track_train_info")
        test_rows = read_tracks(files["tracks_test_info.mat"], "track_test_info")
        qmat = loadmat(str(files["query_IDX.mat"]))
        if "query_IDX" not in qmat:
            raise ValueError(f"{files['query_IDX.mat']}: no variable 'query_IDX'")
        query_idx = np.asarray(qmat["query_IDX"]).astype(np.int64).ravel() - 1
        if query_idx.size == 0 or query_idx.min() < 0 or query_idx.max() >= len(test_rows):
            raise ValueError(
                f"{files['query_IDX.mat']}: query indices must be 1..{len(test_rows)} (rows of track_test_info), "
                f"got range {query_idx.min() + 1}..{query_idx.max() + 1}"
            )

        with gc_paused():
            train_all = _tracklets(train_rows, read_names(files["train_name.txt"]), root / "bbox_train", "train")
            test_all = _tracklets(test_rows, read_names(files["test_name.txt"]), root / "bbox_test", "test")

        train = relabel(t for t in train_all if t is not None)
        query = []
        for q in query_idx.tolist():
            if test_all[q] is None:
                raise ValueError(f"{files['query_IDX.mat']}: query row {q + 1} is a junk row (pid -1)")
            query.append(test_all[q])
        is_query = np.zeros(len(test_all), dtype=bool)
        is_query[query_idx] = True
        gallery = [t for t, q in zip(test_all, is_query.tolist()) if not q and t is not None]

        super().__init__(
            name="mars",
            train=train,
            query=query,
            gallery=gallery,
            extra=dict(
                root=str(root),
                info_dir=str(info),
                query_in_gallery=append_query_to_gallery,
                junk_dropped=int((test_rows[:, 2] == -1).sum() + (train_rows[:, 2] == -1).sum()),
            ),
            query_in_gallery=append_query_to_gallery,
        )
