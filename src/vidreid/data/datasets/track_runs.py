"""Unlabelled video tracklets from ``track.py`` run folders: the training set of unsupervised adaptation
(``dataset=track_runs``, docs/methods.md "Learning from unlabelled video").

Each raw tracker track (one tracker id in one camera, a *tracklet*: one person for sure) becomes one
pseudo-identity with its crops, its camera and its frame span; two tracklets seen at the same time in one
camera are two different people for sure — the co-occurrence cannot-link of :func:`vidreid.video.associate.cannot_link`
(the rule ``track.py``'s association applies). No ground truth is read: only what the tracker wrote.

Read from each run folder (``src/vidreid/runs/track.py``; :mod:`vidreid.video.tracklets`)::

    <run>/tracklets.npz                                   camids, track_ids, start_frame, end_frame (one row per kept
                                                          tracklet) and, when present, pids: the identities track.py's
                                                          association gave the tracklets (``extra["identities"]``)
    <run>/tracklets/multi_shot/cam_a/track_0007/*.jpg     the crops, named by 0-based video frame

Cameras are renumbered so that they are unique over all runs: run ``r``'s camera ``c`` is ``offset_r + c`` with
``offset_r`` the number of cameras of the runs before it, so tracklets of different videos never share a camid
(and never get a cannot-link: nothing says two videos show different people).

Training only: ``train`` holds every tracklet (pid = its index, ``0..N-1``, in run / camera / start order);
``query`` and ``gallery`` are empty (there is no labelled test split; train with ``test=false`` and evaluate the
adapted checkpoint on a labelled set, e.g. ``dataset=mot_tracklets``). ``extra`` carries ``cannot_link``
``(N, N)`` bool, ``camids``, ``start_frame``, ``end_frame`` (``(N,)`` int64) and ``runs``; and ``identities``
``(N,)`` int64 when every run's ``tracklets.npz`` holds ``pids``: the tracklet's identity in ``track.py``'s
association (its constrained clustering with the motion gate, gap limit and hidden-in-place rule), numbered so that
identities of different runs differ. That is the tracker's own unsupervised grouping, not a label: the
``adapt.pseudo_labels=track`` start of the adaptation reads it (:mod:`vidreid.engine.adapt_module`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel
from vidreid.video.associate import cannot_link
from vidreid.video.tracklets import camera_folder

__all__ = ["TrackRuns", "read_track_run"]

LAYOUT = """<run>/tracklets.npz (camids, track_ids, start_frame, end_frame) and
<run>/tracklets/multi_shot/<cam_a|cam_b|...>/track_<id:04d>/<frame:06d>.jpg, as `python track.py` writes them"""

NPZ_KEYS = ("camids", "track_ids", "start_frame", "end_frame")


def read_track_run(run: str | Path, min_frames: int = 1, max_frames: int | None = None,
                   frame_range: Sequence[int] | None = None) -> list[dict]:  # fmt: skip
    """The tracklets of one ``track.py`` run folder: ``[{camid, track_id, start, end, frames (paths), frame_ids}]``
    in the order of its ``tracklets.npz``; ``identity`` is the row's association identity (``pids``) or ``None``
    when the file has no ``pids``.

    Args:
        run: the run folder (``hydra.run.dir`` of ``track.py``).
        min_frames: tracklets with fewer crops are skipped. max_frames: keep at most this many crops per tracklet,
            evenly spaced in time (``None``: all).
        frame_range: ``[first, end)`` 0-based video frames: only the crops of these frames are kept and each frame
            span is cut to them (``None``: all). The tracker is online, so the tracklets of a run cut at frame ``end``
            are those of a run on the frames before ``end`` (up to track.py's length filters, which saw the whole
            track): the held-out protocol's "adapted on the first half" uses ``[0, 397]`` of PETS09-S2L1.
    Raises:
        FileNotFoundError: no run folder, no ``tracklets.npz`` or a tracklet's crop folder missing / empty (the
            message names the run folder and the missing path).
        ValueError: ``tracklets.npz`` lacks one of :data:`NPZ_KEYS`, or its arrays differ in length.
    """
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"track run folder not found: {run}. Expected layout:\n{LAYOUT}")
    npz = run / "tracklets.npz"
    if not npz.is_file():
        raise FileNotFoundError(f"track run {run}: missing {npz.name} ({npz}). Expected layout:\n{LAYOUT}")
    if min_frames < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"min_frames={min_frames} and max_frames={max_frames}: expected >= 1 (max_frames or null)")
    with np.load(npz, allow_pickle=False) as z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"track run {run}: {npz.name} lacks {missing} (has {sorted(z.files)}); expected the "
                             f"arrays {list(NPZ_KEYS)} that track.py writes")  # fmt: skip
        cams, tids, starts, ends = (np.asarray(z[k], np.int64).ravel() for k in NPZ_KEYS)
        idents = np.asarray(z["pids"], np.int64).ravel() if "pids" in z.files else None
    if not (len(cams) == len(tids) == len(starts) == len(ends)) or (idents is not None and len(idents) != len(cams)):
        raise ValueError(f"track run {run}: {npz.name} arrays differ in length: camids {len(cams)}, track_ids "
                         f"{len(tids)}, start_frame {len(starts)}, end_frame {len(ends)}"
                         + ("" if idents is None else f", pids {len(idents)}"))  # fmt: skip
    out = []
    rows = zip(cams.tolist(), tids.tolist(), starts.tolist(), ends.tolist(),
               [None] * len(cams) if idents is None else idents.tolist())  # fmt: skip
    for cam, tid, s, e, ident in rows:
        folder = run / "tracklets" / "multi_shot" / camera_folder(cam) / f"track_{tid:04d}"
        if not folder.is_dir():
            raise FileNotFoundError(f"track run {run}: missing the crop folder of tracklet camid={cam} track_id={tid}: "
                                    f"{folder}. Expected layout:\n{LAYOUT}")  # fmt: skip
        files = sorted(folder.glob("*.jpg"))
        if not files:
            raise FileNotFoundError(f"track run {run}: crop folder {folder} holds no .jpg (expected one crop per "
                                    "tracked box)")  # fmt: skip
        if frame_range is not None:
            first, last = int(frame_range[0]), int(frame_range[1])
            files = [p for p in files if p.stem.isdigit() and first <= int(p.stem) < last]
            if not files:
                continue
            s, e = max(s, first), min(e, last - 1)
        if len(files) < min_frames:
            continue
        if max_frames is not None and len(files) > max_frames:
            files = [files[i] for i in np.linspace(0, len(files) - 1, max_frames).round().astype(int)]
        try:
            frame_ids = tuple(int(p.stem) for p in files)
        except ValueError:
            frame_ids = None
        out.append(dict(camid=int(cam), track_id=int(tid), start=int(s), end=int(e), frames=tuple(files),
                        frame_ids=frame_ids, identity=ident))  # fmt: skip
    return out


class TrackRuns(ReIDDataset):
    """Pseudo-identities from one or more ``track.py`` runs (see the module docstring).

    Args:
        runs: run folders (a single path is accepted).
        min_frames: skip tracklets with fewer crops (too short to hold two views of a person).
        max_frames: at most this many crops per tracklet, evenly spaced (``None``: all).
        frame_range: ``[first, end)`` 0-based video frames kept in every run (:func:`read_track_run`).
        name: the dataset name in the statistics.
        pids: ``tracklet``: pid = the tracklet's index (one pseudo-identity per raw track, what the adaptation
            objectives need); ``identity``: pid = its identity in ``track.py``'s association (``extra["identities"]``,
            renumbered ``0..K-1``), to train the supervised recipe (identity CE + triplet) on those groups.
        source: a labelled re-ID set (e.g. ``dataset.source={_target_: vidreid.data.datasets.prid2011.PRID2011,
            root: .../pku-reid, split_file: splits_pku_10fold.json}``) whose *training* tracklets are appended after
            the runs' (the source domain of unsupervised domain adaptation, as the source classes in SpCL's hybrid
            memory: Ge et al., NeurIPS 2020): pid = index as for the runs, ``extra["identities"]`` = its labelled
            pid (numbered after the runs' identities), its cameras after the runs', cannot-links between its
            tracklets of different pids (known different people); ``extra["is_source"]`` marks them.
    Raises:
        FileNotFoundError / ValueError: as :func:`read_track_run`; ValueError also when ``runs`` is empty or no
            tracklet is left.
    """

    def __init__(self, runs: Sequence[str | Path] | str | Path, min_frames: int = 4, max_frames: int | None = None,
                 frame_range: Sequence[int] | None = None, name: str = "track_runs", pids: str = "tracklet",
                 source: ReIDDataset | None = None):  # fmt: skip
        if isinstance(runs, str | Path):
            runs = [runs]
        runs = [Path(r) for r in (runs or [])]
        if not runs:
            raise ValueError("dataset.runs is empty: expected one or more track.py run folders, e.g. "
                             "dataset.runs=[logs/track/runs/<time>]")  # fmt: skip
        items: list[Tracklet] = []
        cams, starts, ends, origin, idents = [], [], [], [], []
        offset = ident_offset = 0
        for run in runs:
            tracklets = read_track_run(run, min_frames, max_frames, frame_range)
            local = sorted({t["camid"] for t in tracklets})
            cam_map = {c: offset + k for k, c in enumerate(local)}
            for t in sorted(tracklets, key=lambda t: (t["camid"], t["start"], t["track_id"])):
                camid = cam_map[t["camid"]]
                items.append(Tracklet(t["frames"], len(items), camid, t["frame_ids"]))
                cams.append(camid)
                starts.append(t["start"])
                ends.append(t["end"])
                origin.append(dict(run=str(run), camid=t["camid"], track_id=t["track_id"]))
                idents.append(None if t["identity"] is None else ident_offset + t["identity"])
            offset += len(local)
            ident_offset = max([ident_offset - 1] + [i for i in idents if i is not None]) + 1
        if not items:
            raise ValueError(f"no tracklet with at least min_frames={min_frames} crops in the track runs {list(map(str, runs))}")
        forbid = cannot_link(cams, starts, ends)
        n_runs = len(items)
        if source is not None:
            items, cams, starts, ends, idents, origin, forbid = _append_source(source, items, cams, starts, ends, idents,
                                                                               origin, forbid, offset)  # fmt: skip
        camids = np.asarray(cams, np.int64)
        start_frame, end_frame = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        extra = dict(runs=[str(r) for r in runs], camids=camids, start_frame=start_frame, end_frame=end_frame,
                     cannot_link=forbid, origin=origin, is_source=np.arange(len(items)) >= n_runs)  # fmt: skip
        if all(i is not None for i in idents):
            extra["identities"] = np.asarray(idents, np.int64)
        if pids == "identity":
            if "identities" not in extra:
                missing = sorted({o["run"] for o, i in zip(origin, idents) if i is None and "run" in o})
                raise ValueError(f"dataset.pids=identity reads the association identities (pids) of each run's "
                                 f"tracklets.npz; missing in {missing}")  # fmt: skip
            items = relabel(Tracklet(t.frames, int(i), t.camid, t.frame_ids) for t, i in zip(items, extra["identities"]))
        elif pids != "tracklet":
            raise ValueError(f"dataset.pids={pids!r}: expected 'tracklet' (one pseudo-identity per raw track) or "
                             "'identity' (the identities of track.py's association)")  # fmt: skip
        super().__init__(name=name, train=items, query=[], gallery=[], extra=extra)


def _append_source(source: ReIDDataset, items: list[Tracklet], cams: list, starts: list, ends: list, idents: list,
                   origin: list, forbid: np.ndarray, cam_offset: int) -> tuple:  # fmt: skip
    """The labelled ``source`` training tracklets appended to the runs' (see :class:`TrackRuns` ``source``)."""
    train = list(source.train)
    if not train:
        raise ValueError(f"dataset.source {getattr(source, 'name', source)!r} has no training tracklets")
    n0 = len(items)
    base = max([-1] + [i for i in idents if i is not None]) + 1
    pids = np.unique([t.pid for t in train], return_inverse=True)[1]
    items, cams, starts, ends, idents, origin = (list(x) for x in (items, cams, starts, ends, idents, origin))
    for t, p in zip(train, pids.tolist()):
        items.append(Tracklet(t.frames, len(items), cam_offset + t.camid, t.frame_ids))
        cams.append(cam_offset + t.camid)
        starts.append(-1)  # no frame span: never a co-occurrence cannot-link
        ends.append(-1)
        idents.append(base + p)
        origin.append(dict(source=getattr(source, "name", "source"), pid=int(t.pid), camid=int(t.camid)))
    n = len(items)
    out = np.zeros((n, n), bool)
    out[:n0, :n0] = forbid
    out[n0:, n0:] = pids[:, None] != pids[None, :]
    return items, cams, starts, ends, idents, origin, out
