"""LS-VID (Li et al., "Global-Local Temporal Representations for Video Person Re-Identification", ICCV 2019).

Layout (docs/methods.md §0.1; STAFormer's LS-VID loader)::

    root/list_sequence/list_seq_train.txt   lines "<relative frame-path prefix> <pid>"
    root/list_sequence/list_seq_test.txt
    root/test/data/info_test.mat            MATLAB v7.3 (HDF5): info_test (N, 4), query (1-based rows of the test list)
    root/<prefix>*                          the frames of a tracklet: every file whose path starts with the prefix

Each frame folder is listed once; the frames of a tracklet are the names in that listing that start with the
prefix's basename (what ``glob(prefix + '*')`` finds), in frame order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from vidreid.data.datasets._layout import chunk_all, frame_paths, gc_paused, list_dir, sort_frame_names
from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel, require_paths

LAYOUT = """root/list_sequence/list_seq_train.txt, root/list_sequence/list_seq_test.txt  ("<frame-path prefix> <pid>" lines)
root/test/data/info_test.mat  (MATLAB v7.3 / HDF5 with 'info_test' and 'query')
root/<prefix>*  (frames, e.g. tracklet_train/.../<prefix>_<frame>.jpg)"""

NUM_CAMERAS = 15


@dataclass(frozen=True)
class LSVIDProtocol:
    """The LS-VID evaluation protocol of an ``info_*.mat`` file.

    Attributes:
        tracks: ``(N, 4)`` int64 rows ``(start_frame, end_frame, pid, camid)`` as stored (pid 0-based,
            camid 1..15).
        query: ``(Q,)`` int64 0-based row indices of the query tracklets (the file stores them 1-based).
    """

    tracks: np.ndarray
    query: np.ndarray

    @property
    def gallery(self) -> np.ndarray:
        """0-based indices of the rows that are not queries (LS-VID does not append queries to the gallery)."""
        mask = np.ones(len(self.tracks), dtype=bool)
        mask[self.query] = False
        return np.flatnonzero(mask)


def read_lsvid_protocol(path: str | Path) -> LSVIDProtocol:
    """Read ``info_test.mat`` (HDF5 / v7.3, via h5py) or ``info_val.mat`` (v5, via scipy).

    Both hold a tracklet table in a variable named ``info_test`` and 1-based query indices in ``query``.
    MATLAB writes column-major arrays, so h5py sees the ``(N, 4)`` table as ``(4, N)``; it is transposed
    back here. Real file (lsvid-info): 11,333 tracklets, 3,504 queries, 15 cameras.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: missing variables, a table that is not 4 columns, or query indices out of range / repeated.
    """
    path = Path(path)
    require_paths([path], "an LS-VID info_test.mat / info_val.mat file")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            missing = [k for k in ("info_test", "query") if k not in f]
            if missing:
                raise ValueError(f"{path}: missing HDF5 datasets {missing} (has {sorted(f.keys())})")
            tracks = np.asarray(f["info_test"][()])
            query = np.asarray(f["query"][()])
        if tracks.ndim == 2 and tracks.shape[0] == 4 and tracks.shape[1] != 4:
            tracks = tracks.T  # MATLAB column-major storage
    else:
        from scipy.io import loadmat

        mat = loadmat(str(path))
        missing = [k for k in ("info_test", "query") if k not in mat]
        if missing:
            raise ValueError(f"{path}: missing variables {missing}")
        tracks, query = np.asarray(mat["info_test"]), np.asarray(mat["query"])
    if tracks.ndim != 2 or tracks.shape[1] != 4:
        raise ValueError(f"{path}: info table has shape {tracks.shape}, expected (N, 4) (start, end, pid, camid)")
    tracks = np.rint(tracks).astype(np.int64)
    query = np.rint(query).astype(np.int64).ravel() - 1
    if query.size and (query.min() < 0 or query.max() >= len(tracks)):
        raise ValueError(
            f"{path}: query indices must lie in 1..{len(tracks)}, got {query.min() + 1}..{query.max() + 1}"
        )
    if np.unique(query).size != query.size:
        raise ValueError(f"{path}: repeated query indices")
    return LSVIDProtocol(tracks=tracks, query=query)


def read_sequence_list(path: Path) -> list[tuple[str, int]]:
    """``(prefix, pid)`` per line of a ``list_seq_*.txt`` file.

    Raises:
        ValueError: on a line that is not "<prefix> <int pid>".
    """
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{i + 1}: expected '<frame-path prefix> <pid>', got {line!r}")
        out.append((parts[0], int(parts[1])))
    return out


class _FolderIndex:
    """Sorted listings of frame folders, each read once, answering "names starting with a prefix"."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[str, list[str]] = {}

    def frames(self, prefix: str) -> tuple[Path, list[str]]:
        folder_rel, _, base = prefix.rpartition("/")
        folder = self.root / folder_rel if folder_rel else self.root
        names = self._listings.get(folder_rel)
        if names is None:
            names = self._listings[folder_rel] = list_dir(folder)
        lo = bisect.bisect_left(names, base)
        hi = lo
        while hi < len(names) and names[hi].startswith(base):
            hi += 1
        return folder, names[lo:hi]


def _parse_list(items: list[tuple[str, int]], index: _FolderIndex, what: str) -> list[Tracklet | None]:
    out: list[Tracklet | None] = []
    for prefix, pid in items:
        folder, names = index.frames(prefix)
        if not names:
            raise ValueError(f"{what}: no frames match prefix {folder / prefix.rpartition('/')[2]}*")
        if pid == -1:  # junk
            out.append(None)
            continue
        names = sort_frame_names(names)
        fields = names[0].split("_")
        if len(fields) < 3 or not fields[2].isdigit() or not 1 <= int(fields[2]) <= NUM_CAMERAS:
            raise ValueError(
                f"{what}: cannot read the camera (3rd '_' field, 1..{NUM_CAMERAS}) from frame name {names[0]!r} in {folder}"
            )
        out.append(Tracklet(frame_paths(folder, names), pid, int(fields[2]) - 1))
    return out


class LSVID(ReIDDataset):
    """LS-VID video re-ID (3,772 ids, 15 cameras; test: 3,504 queries, gallery = the other test tracklets).

    Args:
        root: dataset folder (see module docstring).
        train_chunk: cut training tracklets into consecutive chunks of this many frames, the last
            chunk taking the remainder (STAFormer uses 48); 0 = whole tracklets.

    The camera is the 3rd ``_`` field of a tracklet's first frame name (1..15 -> 0..14). Query = test-list
    rows at ``info_test.mat['query']``; gallery = the remaining rows, queries not appended. Junk rows
    (pid -1) are dropped. Train pids are relabelled to 0..N-1.

    Raises:
        FileNotFoundError: a layout path is missing (the message names it and the expected layout).
        ValueError: a prefix matching no frame, an unreadable camera, or a test list whose length differs
            from the rows of ``info_test.mat``.
    """

    def __init__(self, root: str | Path, train_chunk: int = 0):
        root = Path(root)
        lists = root / "list_sequence"
        info = root / "test" / "data" / "info_test.mat"
        require_paths([root, lists / "list_seq_train.txt", lists / "list_seq_test.txt", info], LAYOUT)
        protocol = read_lsvid_protocol(info)
        train_items = read_sequence_list(lists / "list_seq_train.txt")
        test_items = read_sequence_list(lists / "list_seq_test.txt")
        if len(test_items) != len(protocol.tracks):
            raise ValueError(
                f"{lists / 'list_seq_test.txt'} has {len(test_items)} tracklets but {info} describes "
                f"{len(protocol.tracks)}: the query indices would point at the wrong tracklets"
            )
        index = _FolderIndex(root)
        with gc_paused():
            train = [t for t in _parse_list(train_items, index, "train") if t is not None]
            train = chunk_all(relabel(train), train_chunk)
            test = _parse_list(test_items, index, "test")
        query = [test[i] for i in protocol.query.tolist() if test[i] is not None]
        gallery = [test[i] for i in protocol.gallery.tolist() if test[i] is not None]
        super().__init__(
            name="lsvid",
            train=train,
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), train_chunk=train_chunk, query_in_gallery=False),
        )
