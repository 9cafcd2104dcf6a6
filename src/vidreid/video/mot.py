"""MOTChallenge files and their scoring: tracks written in the MOTChallenge text format, ground truth read from a
``gt.txt`` or a MOT sequence folder, and both scored with TrackEval — the MOTChallenge benchmark's own scorer
(Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV 2021; PyPI ``trackeval``:
its ``MotChallenge2DBox`` dataset with ``BENCHMARK=MOT15`` and its ``HOTA``, ``CLEAR`` and ``Identity`` metrics).
No metric is computed here: this module only writes the files TrackEval reads and collects its numbers.

MOTChallenge text format, one box per line (``gt.txt``, ``det.txt``, tracker output)::

    frame, id, left, top, width, height, conf, x, y, z

``frame`` is 1-based (MOT frame ``f`` = 0-based video frame ``f - 1``), boxes in pixels; in ``gt.txt`` ``conf = 0``
marks a box the scorer ignores; ``x, y, z`` are ``-1`` in 2-D tracking. A prediction matches a ground-truth box at
IoU >= 0.5 (CLEAR MOT and Identity metrics); HOTA averages its scores over IoU thresholds 0.05..0.95.
"""

from __future__ import annotations

import configparser
import contextlib
import csv
import io
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidreid.video.tracklets import TrackRow

__all__ = ["METRIC_KEYS", "PERSONS", "VIDEO_SUFFIXES", "MOTSequence", "gt_rows", "merge_gt_persons", "person_ids", "persons_of",
           "print_score_table", "read_mot", "resolve_gt", "score_mot", "sequence_video", "score_table", "write_mot"]  # fmt: skip

MOT_COLUMNS = ("frame", "id", "left", "top", "width", "height", "conf", "x", "y", "z")
#: the numbers :func:`score_mot` returns per tracker (TrackEval's names in brackets where they differ)
METRIC_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDP", "IDR", "IDSW", "precision", "recall", "TP",
               "FP", "FN", "MT", "PT", "ML", "Frag", "gt_ids", "pred_ids", "gt_boxes", "pred_boxes")  # fmt: skip


@dataclass(frozen=True)
class MOTSequence:
    """A ground truth to score against: its ``gt.txt``, the sequence name and, when a MOT sequence folder
    (``seqinfo.ini``) gives them, its length in frames and frame rate (``None`` otherwise)."""

    name: str
    gt_path: Path
    num_frames: int | None = None
    fps: float | None = None


def resolve_gt(gt: str | Path) -> MOTSequence:
    """The ground truth ``gt``: a MOTChallenge ``gt.txt`` file, or a MOT sequence folder holding ``gt/gt.txt``
    (and optionally ``seqinfo.ini``, which gives the name, length and frame rate), e.g.
    ``../shared/data/mot15/PETS09-S2L1``.

    Raises:
        FileNotFoundError: neither a file nor a folder with ``gt/gt.txt`` (names the path).
    """
    p = Path(gt)
    if p.is_dir():
        gt_path = p / "gt" / "gt.txt"
        if not gt_path.is_file():
            raise FileNotFoundError(f"ground truth not found: {gt_path} (gt={p} is a folder; expected a MOT sequence "
                                    f"folder with gt/gt.txt, or the path of a gt.txt file)")  # fmt: skip
        name, n, fps = p.name, None, None
        ini = p / "seqinfo.ini"
        if ini.is_file():
            cp = configparser.ConfigParser()
            cp.read(ini)
            if cp.has_section("Sequence"):
                s = cp["Sequence"]
                name = s.get("name", name)
                n = int(s["seqLength"]) if "seqLength" in s else None
                fps = float(s["frameRate"]) if "frameRate" in s else None
        return MOTSequence(name, gt_path, n, fps)
    if p.is_file():
        name = p.parent.parent.name if p.parent.name == "gt" else p.stem
        return MOTSequence(name or "seq", p)
    raise FileNotFoundError(f"ground truth not found: {p} (expected a MOTChallenge gt.txt file or a MOT sequence "
                            f"folder with gt/gt.txt)")  # fmt: skip


#: video file suffixes looked for in a MOT sequence folder
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def sequence_video(path: str | Path) -> Path:
    """``path``, or for a folder (a MOT sequence folder such as ``mot15/TUD-Campus``) the single video inside it.

    Raises:
        FileNotFoundError: a folder without exactly one :data:`VIDEO_SUFFIXES` file (names the folder and them).
    """
    path = Path(path)
    if not path.is_dir():
        return path
    found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(found) != 1:
        raise FileNotFoundError(f"video not found: {path} is a folder with {len(found)} video files "
                                f"({[p.name for p in found]}); expected one, or name the video file itself")  # fmt: skip
    return found[0]


def read_mot(path: str | Path) -> np.ndarray:
    """Read a MOTChallenge text file into an ``(N, 10)`` float64 array (:data:`MOT_COLUMNS`; missing trailing
    columns ``conf, x, y, z`` read as ``1, -1, -1, -1``). Blank lines and ``#`` comments are skipped.

    Raises:
        FileNotFoundError: missing file. ValueError: a line with fewer than 6 numbers, a non-number, a frame < 1
            or a negative width/height (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path} (expected lines frame,id,left,top,width,height,conf,...)")
    out = []
    with path.open() as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                vals = [float(v) for v in row[:10]]
            except ValueError:
                vals = []
            if len(vals) < 6:
                raise ValueError(f"{path}:{lineno}: expected frame,id,left,top,width,height[,conf,x,y,z] numbers, "
                                 f"got {','.join(row)!r}")  # fmt: skip
            vals += [1.0, -1.0, -1.0, -1.0][len(vals) - 6 :]
            if vals[0] < 1 or vals[4] < 0 or vals[5] < 0:
                raise ValueError(f"{path}:{lineno}: expected a 1-based frame and width/height >= 0, got "
                                 f"{','.join(row)!r}")  # fmt: skip
            out.append(vals)
    return np.asarray(out, np.float64).reshape(-1, 10)


def gt_rows(gt: np.ndarray, frames: Sequence[int] | None = None) -> list[TrackRow]:
    """The evaluated ground-truth boxes (``conf != 0``) of :func:`read_mot`'s array as :class:`TrackRow` s with
    0-based video frames (MOT frame - 1), ``track_id = identity =`` the ground-truth id; only ``frames`` (0-based)
    when given."""
    keep = gt[:, 6] != 0
    if frames is not None:
        keep &= np.isin(gt[:, 0].astype(np.int64) - 1, np.asarray(list(frames), np.int64))
    return [TrackRow(0, int(r[0]) - 1, int(r[1]), float(r[2]), float(r[3]), float(r[2] + r[4]), float(r[3] + r[5]),
                     1.0, int(r[1])) for r in gt[keep]]  # fmt: skip


def write_mot(path: str | Path, rows: Sequence[TrackRow], ids: str = "track") -> Path:
    """Write tracked boxes as a MOTChallenge tracker file (1-based frames, ``conf`` = detection score,
    ``x, y, z = -1``), sorted by frame then id.

    Args:
        rows: tracked boxes of one camera (0-based video frames).
        ids: ``"track"``: the tracker's ids (``track_id``); ``"identity"``: the re-ID identities, written as
            ``identity + 1`` (MOT ids start at 1); rows without an identity (-1) are left out.
    Raises:
        ValueError: ``ids`` is neither ``track`` nor ``identity``, or ``rows`` span several cameras.
    """
    if ids not in ("track", "identity"):
        raise ValueError(f"ids={ids!r}: expected 'track' (tracker ids) or 'identity' (re-ID identities)")
    if len({r.camid for r in rows}) > 1:
        raise ValueError(f"MOT files hold one camera; got rows of cameras {sorted({r.camid for r in rows})}")
    lines = []
    for r in rows:
        if ids == "identity" and r.identity < 0:
            continue
        i = r.track_id if ids == "track" else r.identity + 1
        lines.append((r.frame + 1, i, f"{r.frame + 1},{i},{r.x1:.2f},{r.y1:.2f},{r.x2 - r.x1:.2f},{r.y2 - r.y1:.2f},"
                                      f"{r.score:.4f},-1,-1,-1"))  # fmt: skip
    path = Path(path)
    path.write_text("".join(s + "\n" for _, _, s in sorted(lines)))
    return path


def _renumber(a: np.ndarray, frames: np.ndarray | None) -> np.ndarray:
    """Keep the rows of the 0-based video ``frames`` and renumber their MOT frames 1..len(frames)."""
    if frames is None:
        return a
    pos = {int(f) + 1: i + 1 for i, f in enumerate(frames)}
    keep = np.array([int(f) in pos for f in a[:, 0]], bool) if len(a) else np.zeros(0, bool)
    b = a[keep].copy()
    b[:, 0] = [pos[int(f)] for f in b[:, 0]]
    return b


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in a:
            f.write(f"{int(r[0])},{int(r[1])},{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},{r[6]:g},{r[7]:g},{r[8]:g},"
                    f"{r[9]:g}\n")  # fmt: skip


#: Person-level annotation of MOTChallenge sequences: per sequence name (``seqinfo.ini``'s), the groups of
#: ground-truth ids that are one person. MOTChallenge ground truth gives a person who leaves the frame and comes
#: back a new id (in PETS09-S2L1's and TUD-Campus's ``gt.txt`` no id has a gap of even one frame). PETS09-S2L1's
#: 19 ids are 10 people, read by eye from the crops of every ground-truth track (clothes, hair, face, what they
#: carry; docs/video.md, "Re-entries"): e.g. ids 15, 14, 18 and 8 are one man in a black leather jacket who walks
#: through four times. TUD-Campus (71 frames, everyone walks through once) has no re-entry. Read only to score.
PERSONS: dict[str, list[list[int]]] = {
    "PETS09-S2L1": [[1, 19], [2, 13], [3, 11], [4, 12], [5, 9], [6, 10], [8, 14, 15, 18]],
}


def persons_of(name: str, persons: str | Mapping | Sequence | None = "auto") -> list[list[int]] | None:
    """The person groups to score sequence ``name`` with: ``"auto"`` the shipped :data:`PERSONS` (``None`` for a
    sequence it does not list), ``None`` / ``"none"`` none, a mapping ``{name: groups}`` its entry, or a list of
    groups itself.

    Raises:
        ValueError: a string other than ``auto`` / ``none``, or groups that are not lists of integer ids.
    """
    if persons is None or (isinstance(persons, str) and persons.lower() == "none"):
        return None
    if isinstance(persons, str):
        if persons != "auto":
            raise ValueError(f"persons={persons!r}: expected 'auto', 'none', {{sequence: [[id, ...], ...]}} or "
                             f"[[id, ...], ...]")  # fmt: skip
        groups = PERSONS.get(name)
    elif isinstance(persons, Mapping):
        groups = persons.get(name)
    else:
        groups = persons
    if groups is None:
        return None
    try:
        return [[int(i) for i in g] for g in groups]
    except (TypeError, ValueError):
        raise ValueError(f"persons for {name}: {groups!r}: expected a list of lists of ground-truth ids, e.g. "
                         f"[[9, 5], [13, 2]]") from None  # fmt: skip


def person_ids(persons: Sequence[Sequence[int]]) -> dict[int, int]:
    """``{ground-truth id: person id}`` for the ids in ``persons``: each group's ids map to the group's first id
    (the person id of :func:`merge_gt_persons`); an id in no group keeps its own (look it up with ``.get(i, i)``)."""
    return {int(i): int(g[0]) for g in persons for i in g}


def merge_gt_persons(gt: np.ndarray, persons: Sequence[Sequence[int]], source: str | Path = "ground truth"
                     ) -> np.ndarray:  # fmt: skip
    """Person-level ground truth: a copy of ``gt`` (``(M, >=6)`` MOT rows) in which the ids of each group of
    ``persons`` become the group's first id. MOTChallenge ground truth gives a person who leaves the frame and
    comes back a new id (no id has a gap); a group lists the ids of one person's appearances, so that a tracker
    that keeps one identity across a re-entry is scored as right rather than as an identity switch.

    Raises:
        ValueError: an id of ``persons`` that ``gt`` does not have, an id in two groups, or a group whose ids have
            boxes in one frame (two people, not one) — each names the ids and ``source``.
    """
    out = np.array(gt, copy=True)
    ids = set(np.unique(out[:, 1]).astype(int).tolist()) if len(out) else set()
    seen: dict[int, int] = {}
    for k, group in enumerate(persons):
        g = [int(i) for i in group]
        for i in g:
            if i not in ids:
                raise ValueError(f"{source}: persons group {g} names id {i}, which is not in the ground truth "
                                 f"(ids {sorted(ids)[:5]}...{sorted(ids)[-3:]})")  # fmt: skip
            if i in seen:
                raise ValueError(f"{source}: id {i} is in two persons groups ({list(persons[seen[i]])} and {g})")
            seen[i] = k
        frames = out[np.isin(out[:, 1].astype(int), g), 0].astype(int)
        uniq, counts = np.unique(frames, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{source}: persons group {g} has two boxes in frame {int(uniq[counts > 1][0])}; "
                             f"expected the appearances of one person, never visible at the same time")  # fmt: skip
    person = person_ids(persons)
    out[:, 1] = [person.get(int(i), i) for i in out[:, 1]]
    return out


def score_mot(gt: str | Path | MOTSequence, tracks: Mapping[str, str | Path], num_frames: int | None = None,
              frames: Sequence[int] | None = None, persons: Sequence[Sequence[int]] | None = None
              ) -> dict[str, dict[str, float]]:  # fmt: skip
    """Score tracker files against a ground truth with TrackEval (HOTA, CLEAR, Identity; MOT15 protocol: a
    prediction matches at IoU >= 0.5, ground-truth boxes with ``conf = 0`` are ignored, no class filtering).

    Args:
        gt: a ``gt.txt``, a MOT sequence folder or a :class:`MOTSequence`.
        tracks: ``{name: MOT tracker file}`` (e.g. ``{"raw": "mot_raw.txt", "reid": "mot_reid.txt"}``).
        num_frames: sequence length in frames (default: ``seqinfo.ini``'s, else the last frame in the files).
        frames: score only these 0-based video frames (e.g. every ``stride``-th one that the pipeline processed):
            ground truth and predictions of other frames are left out and the kept frames renumbered ``1..n``.
        persons: groups of ground-truth ids that are one person (:func:`merge_gt_persons`): score against the
            person-level ground truth instead of the per-appearance ids.
    Returns:
        ``{name: {metric: value}}`` with :data:`METRIC_KEYS`: ``HOTA, DetA, AssA`` (TrackEval's mean over the IoU
        thresholds), ``MOTA, MOTP`` (MOTP as TrackEval's mean IoU of matches), ``IDF1, IDP, IDR``, ``IDSW``,
        ``precision, recall`` (CLEAR), the counts ``TP, FP, FN, MT, PT, ML, Frag`` and the numbers of ground-truth
        / predicted ids and boxes.
    Raises:
        FileNotFoundError: a missing file. ValueError: a malformed file (names it), a box after ``num_frames``, a
            bad ``persons`` group (:func:`merge_gt_persons`), or TrackEval's own error (its message).
    """
    import trackeval

    seq = gt if isinstance(gt, MOTSequence) else resolve_gt(gt)
    gt_arr = read_mot(seq.gt_path)
    if persons:
        gt_arr = merge_gt_persons(gt_arr, persons, seq.gt_path)
    preds = {name: read_mot(p) for name, p in tracks.items()}
    fr = None if frames is None else np.unique(np.asarray(list(frames), np.int64))
    if fr is not None:
        n = len(fr)
    else:
        last = max([int(a[:, 0].max()) for a in (gt_arr, *preds.values()) if len(a)] + [1])
        n = int(num_frames or seq.num_frames or last)
        for name, a in [("ground truth " + str(seq.gt_path), gt_arr)] + [(f"{k} ({tracks[k]})", v) for k, v in preds.items()]:
            if len(a) and int(a[:, 0].max()) > n:
                raise ValueError(f"{name}: a box in frame {int(a[:, 0].max())} but the sequence has {n} frames "
                                 f"(expected frames 1..{n})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vidreid_mot_") as tmp:
        root = Path(tmp)
        _save(root / "gt" / "seq" / "gt" / "gt.txt", _renumber(gt_arr, fr))
        for name, a in preds.items():
            _save(root / "trackers" / name / "data" / "seq.txt", _renumber(a, fr))
        dcfg = dict(GT_FOLDER=str(root / "gt"), TRACKERS_FOLDER=str(root / "trackers"), OUTPUT_FOLDER=str(root / "out"),
                    BENCHMARK="MOT15", SKIP_SPLIT_FOL=True, SEQ_INFO={"seq": n}, TRACKERS_TO_EVAL=list(preds),
                    PRINT_CONFIG=False, DO_PREPROC=True)  # fmt: skip
        ecfg = dict(USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                    OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False, PLOT_CURVES=False, BREAK_ON_ERROR=True,
                    LOG_ON_ERROR=None, DISPLAY_LESS_PROGRESS=True)  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints progress lines
            try:
                res, _ = trackeval.Evaluator(ecfg).evaluate(
                    [trackeval.datasets.MotChallenge2DBox(dcfg)],
                    [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()],
                )
            except trackeval.utils.TrackEvalException as e:
                raise ValueError(f"TrackEval could not score {dict(tracks)} against {seq.gt_path}: {e}") from None
    out = {}
    for name in preds:
        r = res["MotChallenge2DBox"][name]["seq"]["pedestrian"]
        h, c, i, k = r["HOTA"], r["CLEAR"], r["Identity"], r["Count"]
        out[name] = dict(
            HOTA=float(np.mean(h["HOTA"])), DetA=float(np.mean(h["DetA"])), AssA=float(np.mean(h["AssA"])),
            MOTA=float(c["MOTA"]), MOTP=float(c["MOTP"]), IDF1=float(i["IDF1"]), IDP=float(i["IDP"]),
            IDR=float(i["IDR"]), IDSW=int(c["IDSW"]), precision=float(c["CLR_Pr"]), recall=float(c["CLR_Re"]),
            TP=int(c["CLR_TP"]), FP=int(c["CLR_FP"]), FN=int(c["CLR_FN"]), MT=int(c["MT"]), PT=int(c["PT"]),
            ML=int(c["ML"]), Frag=int(c["Frag"]), gt_ids=int(k["GT_IDs"]), pred_ids=int(k["IDs"]),
            gt_boxes=int(k["GT_Dets"]), pred_boxes=int(k["Dets"]),
        )  # fmt: skip
    return out


def score_table(scores: Mapping[str, Mapping[str, float]], title: str = "",
                keys: Sequence[str] = ("HOTA", "MOTA", "IDF1", "IDSW", "precision", "recall", "FP", "FN", "pred_ids",
                                       "gt_ids")):  # fmt: skip
    """A ``rich`` table: one row per metric in ``keys``, one column per tracker of ``scores`` (side by side)."""
    from rich.table import Table

    t = Table(title=title or None)
    t.add_column("metric")
    for name in scores:
        t.add_column(name, justify="right")
    for k in keys:
        cells = []
        for s in scores.values():
            v = s.get(k)
            cells.append("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        t.add_row(k, *cells)
    return t


def print_score_table(scores: Mapping[str, Mapping[str, float]], title: str = "") -> None:
    """Print ``title`` (one line, not wrapped: it names files) and :func:`score_table` to the console."""
    from rich.console import Console

    console = Console()
    if title:
        console.print(title, soft_wrap=True, highlight=False, markup=False)
    console.print(score_table(scores))
