"""``track.py``'s job: video(s) -> detections -> tracks -> tracklets -> embeddings -> identities -> counts and
renders. Each stage is its own module of :mod:`vidreid.video`; this one wires them from the Hydra config
(``conf/track.yaml``) and writes the run folder:

======================  ======================================================================================
``tracks.csv``          camid, frame, time_s, track_id, identity, box, score, interpolated — one line per tracked
                        box (identity -1: the track was dropped as too short or static; interpolated 1: a box
                        filled in by ``refine``, no crop)
``identities.json``     per identity its tracklets (camera, tracker id, frames, folder); summary numbers
``tracklets.npz``       tracklet embeddings with pids (= identity), camids, paths, timestamps (``vidreid.deploy.index``)
``tracklets/``          crops per raw track (PRID ``multi_shot`` layout), ``identities/`` crops per identity
``counts.csv/.png``     distinct individuals (and raw tracker ids) per ``count.window_s`` window, per camera
                        (with ``gt``: the ground truth's count per window too, as a line in the plot); with
                        ``count.line``: the line crossings in / out per window (``line_in``, ``line_out``)
``line_counts.csv``     with ``count.line``: each identity's crossings in and out (camid, identity, in, out, ...)
``mot_raw.txt``         the tracks in MOTChallenge format with the tracker's ids (``frame`` 1-based, ``id``, ``left,
                        top, width, height``, ``conf``, -1, -1, -1); ``mot_reid.txt`` the same boxes with the re-ID
                        identities as ids (``_cam_a`` ... suffixes with several cameras)
``metrics.json``        with ``gt=<gt.txt or MOT sequence folder>``: both MOT files scored by TrackEval (HOTA, MOTA,
                        IDF1, IDSW, precision, recall, ...; :mod:`vidreid.video.mot`) and the count error per window;
                        for a sequence in ``score.persons`` also ``tracking_persons``, against the person-level
                        ground truth (one id per person across re-entries)
``annotated*.mp4/.gif`` the video with identity boxes; ``frames/`` a few annotated PNG stills
``identities_merged``   contact sheet of the identities made of several tracklets (first/last crop of each)
``summary.json``        totals, per-stage wall times, settings
======================  ======================================================================================

The stages and the artifacts between them are in :mod:`vidreid.runs.track_stages`. ``step`` splits the run for
scale-out: ``step=tracklets`` runs the per-video stages (read -> embed) and writes each video's folder
(``camera_run.json`` / ``.npz``, ``tracklets/`` crops, ``tracks.csv``), e.g. one Hydra job per video with
``--multirun videos=a.mp4,b.mp4`` on any launcher; ``step=associate runs=[<folder>,...]`` joins such folders
(camera ``i`` = ``runs[i]``, or ``camids``) and runs association, counts, scoring and rendering. ``step=all`` (the
default) does both in one process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from vidreid.runs.track_stages import (
    Associator,
    Camera,
    CameraRun,
    Counter,
    Embedder,
    Identities,
    Renderer,
    Scorer,
    StageClock,
    TrackletBuilder,
    VideoReader,
    camera_suffix,
    load_camera_run,
    save_camera_run,
    track_camera,
)
from vidreid.video.count import line_crossings, plot_counts, window_line_counts, write_counts, write_line_counts
from vidreid.video.mot import MOTSequence, gt_rows, print_score_table, read_mot, resolve_gt, sequence_video, write_mot
from vidreid.video.refine import Refiner
from vidreid.video.render import identity_sheet
from vidreid.video.tracklets import Fragment, write_identity_folders, write_track_table

log = logging.getLogger(__name__)

__all__ = ["check_checkpoint_size", "run_track"]

STEPS = ("all", "tracklets", "associate")


def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, list | tuple | ListConfig):
        return list(x)
    return [x]


def check_checkpoint_size(checkpoint: str | Path, size: Any) -> tuple[int, int]:
    """The crop size ``(H, W)`` to use with ``checkpoint``: its training input size; ``size`` (if not ``None``)
    must equal it.

    Raises:
        FileNotFoundError: no checkpoint file (names the path).
        ValueError: ``size`` differs from the checkpoint's input size, or the checkpoint records none and
            ``size`` is ``None``.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected a train.py .ckpt; pass checkpoint=PATH)")
    trained = _trained_size(path)
    want = tuple(int(v) for v in size) if size is not None else None
    if trained is None and want is None:
        raise ValueError(f"checkpoint {path} records no input size (no saved datamodule settings); "
                         f"pass tracklets.size=[H,W]")  # fmt: skip
    if trained is not None and want is not None and want != trained:
        raise ValueError(f"checkpoint {path} was trained on {trained[0]}x{trained[1]} (HxW) inputs but "
                         f"tracklets.size={list(want)}; expected the checkpoint's size (leave tracklets.size=null)")  # fmt: skip
    return trained or want  # type: ignore[return-value]


def _trained_size(path: Path) -> tuple[int, int] | None:
    """The ``(H, W)`` input size saved in a ``train.py`` checkpoint (:mod:`vidreid.deploy.inference`), ``None`` if absent."""
    from vidreid.deploy.inference import checkpoint_settings, load_checkpoint

    ckpt = load_checkpoint(path)  # KeyError naming the file for a foreign checkpoint
    try:
        return tuple(int(v) for v in checkpoint_settings(ckpt, path).size)
    except KeyError:
        return None


@dataclass
class Stages:
    """The configured stages of a run (detector and tracker are built per video: they hold per-video state)."""

    reader: VideoReader
    refiner: Refiner
    tracklets: TrackletBuilder
    embedder: Embedder
    associator: Associator
    counter: Counter
    scorer: Scorer
    renderer: Renderer

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Stages:
        return cls(*(instantiate(cfg[k]) for k in ("reader", "refine", "tracklets", "embed", "associate", "count",
                                                   "score", "render")))  # fmt: skip


def run_track(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.step`` of the video -> identities pipeline (``conf/track.yaml``); return the summary dict.

    Raises:
        FileNotFoundError: a missing video, checkpoint, ground truth or ``runs`` folder. ValueError: an
            undecodable or empty video, a checkpoint of another input size, no detections in a video, a window
            longer than a video, mismatched ``camids`` / ``gt``, an unknown ``step``.
    """
    t_start, clock = time.perf_counter(), StageClock()
    step, st = str(cfg.get("step", "all")), Stages.from_config(cfg)
    if step not in STEPS:
        raise ValueError(f"step={step!r}: expected one of {', '.join(STEPS)}")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if step == "associate":
        runs = _load_runs(cfg)
        gts = _ground_truths(cfg, [r.camera for r in runs], st.scorer)
        settings = json.loads((Path(_as_list(cfg.runs)[0]) / "camera_run.json").read_text())["settings"]
    else:
        cameras, gts, size = _check_inputs(cfg, st)
        settings = _settings(cfg, size)
        for stale in ("tracklets", "identities", "frames"):  # a rerun into the same folder starts clean
            shutil.rmtree(out / stale, ignore_errors=True)
        runs = [_track_video(cfg, st, cam, size, out, clock) for cam in cameras]
        if step == "tracklets":
            return _write_camera_runs(runs, out, settings, time.perf_counter() - t_start, clock)
    fragments, emb = _joint_tracklets(runs)
    fps = {r.camera.camid: r.camera.info.fps for r in runs}
    sizes = {r.camera.camid: (r.camera.info.width, r.camera.info.height) for r in runs}
    with clock("associate"):
        ids = st.associator(fragments, emb, fps, sizes)
        _label(runs, fragments, ids)
    log.info("%d tracklets -> %d identities (threshold %.3f, %s linkage)", len(fragments), ids.count, ids.threshold,
             st.associator.linkage)  # fmt: skip
    with clock("write"):
        counts, scored = _write_outputs(st, runs, fragments, emb, ids, gts, out)
    with clock("render"):
        rendered = _render(st, runs, counts, out, settings) if st.renderer.enabled else {}
    timings = clock.as_dict() | {"total_s": time.perf_counter() - t_start}
    summary = _summary(cfg, st, settings, runs, fragments, ids, counts, timings, rendered)
    _write_reports(summary, scored, fragments, fps, out)
    return summary


# ------------------------------------------------------------------------------------------------- inputs
def _check_inputs(cfg: DictConfig, st: Stages) -> tuple[list[Camera], dict[int, MOTSequence], tuple[int, int]]:
    """Every input checked before any heavy work, cheapest first: paths exist (videos, ground truth, checkpoint),
    then the checkpoint's input size, then each video probed and the count window checked against it."""
    videos = [sequence_video(Path(v)) for v in _as_list(cfg.videos)]
    if not videos:
        raise ValueError("no input video: set videos=PATH or videos=[PATH_CAM0,PATH_CAM1,...]")
    camids = [int(c) for c in _as_list(cfg.camids)] or list(range(len(videos)))
    if len(camids) != len(videos) or len(set(camids)) != len(camids):
        raise ValueError(f"camids={camids} must give one distinct camera id per video ({len(videos)} videos)")
    gt = _as_list(cfg.get("gt"))
    if gt and len(gt) != len(videos):
        raise ValueError(f"gt={gt}: expected one ground truth per video ({len(videos)} videos; use null for a video "
                         f"without ground truth)")  # fmt: skip
    for g in gt:
        if g is not None:
            resolve_gt(g)  # FileNotFoundError naming the path
    if cfg.checkpoint is None:
        raise ValueError("no re-ID checkpoint: pass checkpoint=PATH (a train.py .ckpt, e.g. "
                         "logs/train/runs/<run>/checkpoints/last.ckpt)")  # fmt: skip
    size = check_checkpoint_size(cfg.checkpoint, st.tracklets.size)
    cameras = []
    for cam, v in zip(camids, videos):
        camera = st.reader.probe(cam, v)
        st.counter.check(camera)
        info = camera.info
        log.info("camera %d: %s (%d frames, %g fps, %dx%d)", cam, v, info.num_frames, info.fps, info.width,
                 info.height)  # fmt: skip
        cameras.append(camera)
    return cameras, _ground_truths(cfg, cameras, st.scorer), size


def _ground_truths(cfg: DictConfig, cameras: list[Camera], scorer: Scorer) -> dict[int, MOTSequence]:
    """``cfg.gt`` per camera: one path (single video) or a list aligned with the videos / runs (``null``
    entries: not scored). Each is read once here so that a bad file fails before any heavy work."""
    gt = _as_list(cfg.get("gt"))
    if not gt:
        return {}
    if len(gt) != len(cameras):
        raise ValueError(f"gt={gt}: expected one ground truth per video ({len(cameras)} videos; use null for a video "
                         f"without ground truth)")  # fmt: skip
    return {c.camid: scorer.load(g, c) for c, g in zip(cameras, gt) if g is not None}


def _settings(cfg: DictConfig, size: tuple[int, int]) -> dict:
    """What the per-video stages ran with (kept with a ``step=tracklets`` folder for the joint step)."""
    return dict(checkpoint=str(cfg.checkpoint), crop_size=list(size), frame_stride=int(cfg.reader.stride),
                start=int(cfg.reader.start), detector=OmegaConf.to_container(cfg.detector, resolve=True),
                crop_background=dict(mode=str(cfg.tracklets.get("background", "auto")),
                                     threshold=float(cfg.tracklets.get("background_threshold", 45.0)),
                                     step=int(cfg.tracklets.get("background_step", 4))))  # fmt: skip


def _load_runs(cfg: DictConfig) -> list[CameraRun]:
    """``step=associate``: the ``runs`` folders as cameras ``camids`` (default ``0..n-1`` in ``runs`` order)."""
    folders = [Path(r) for r in _as_list(cfg.get("runs"))]
    if not folders:
        raise ValueError("step=associate needs runs=[<folder>,...]: the folders of `track.py step=tracklets` runs")
    camids = [int(c) for c in _as_list(cfg.camids)] or list(range(len(folders)))
    if len(camids) != len(folders) or len(set(camids)) != len(camids):
        raise ValueError(f"camids={camids} must give one distinct camera id per run folder ({len(folders)} runs)")
    return [load_camera_run(f, c) for f, c in zip(folders, camids)]


# --------------------------------------------------------------------------------------------- per video
def _track_video(cfg: DictConfig, st: Stages, camera: Camera, size: tuple[int, int], out: Path,
                 clock: StageClock) -> CameraRun:  # fmt: skip
    """read -> detect -> track -> refine -> tracklets -> embed for one video."""
    # the median background (auto / suppress): one more pass over the video, timed as its own stage
    with clock("background") if st.tracklets.crop_background != "keep" else contextlib.nullcontext():
        writer = st.tracklets.writer(out / "tracklets", size, camera)
    detector = instantiate(cfg.detector)
    tracker = instantiate(cfg.tracker, fps=camera.info.fps / st.reader.stride)
    with clock("detect_track_crop"):
        run = track_camera(camera, st.reader, detector, tracker, writer, st.counter, clock,
                           foreground=st.tracklets.foreground_meter())  # fmt: skip
    if st.refiner.enabled:
        with clock("refine"):
            info = camera.info
            run.rows, links = st.refiner(run.rows, info.fps, stride=st.reader.stride, frame_size=(info.width,
                                                                                                  info.height))  # fmt: skip
            writer.relabel(links)
        log.info("camera %d: refine linked %d track pairs by motion, filled %d boxes", camera.camid, len(links),
                 sum(r.interpolated for r in run.rows))  # fmt: skip
    run.tracklets = st.tracklets(run.rows, writer, stride=st.reader.stride)
    kept, dropped = run.tracklets.kept, run.tracklets.dropped
    log.info("camera %d: %d tracklets kept (%d of them static, kept on evidence), %d dropped (shorter than %d boxes "
             "or static without evidence of a person)", camera.camid, len(kept), sum("static" in f.meta for f in kept),
             len(dropped), st.tracklets.min_length)  # fmt: skip
    if kept:
        with clock("embed"):
            run.embeddings = st.embedder(cfg.checkpoint, kept)
    return run


def _write_camera_runs(runs: list[CameraRun], out: Path, settings: dict, seconds: float, clock: StageClock) -> dict:
    """``step=tracklets``: each video's folder (``out`` itself for one video, ``out/<cam_x>`` for several)."""
    summary = {"step": "tracklets", "folders": [], "timings_s": {k: round(v, 2) for k, v in clock.as_dict().items()}}
    for run in runs:
        if run.embeddings is None:
            raise ValueError(f"no tracklet left in {run.camera.video}: expected a video with tracks of at least "
                             f"tracklets.min_length boxes")  # fmt: skip
        folder = out if len(runs) == 1 else out / camera_suffix(run.camera.camid, True).lstrip("_")
        if folder != out:
            folder.mkdir(exist_ok=True)
            shutil.move(str(out / "tracklets" / "multi_shot" / camera_suffix(run.camera.camid, True).lstrip("_")),
                        str(folder / "tracklets" / "multi_shot" / camera_suffix(run.camera.camid, True).lstrip("_")))
        save_camera_run(run, folder, settings)
        write_track_table(folder / "tracks.csv", run.rows, {run.camera.camid: run.camera.info.fps})
        summary["folders"].append(str(folder))
    summary["total_s"] = round(seconds, 2)
    summary["read"] = [r.read.to_dict() if r.read is not None else None for r in runs]
    summary["damaged_videos"] = [r.read.message() for r in runs if r.read is not None and r.read.damaged]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("per-video tracklets written to %s; join them with: python track.py step=associate runs=[...]",
             summary["folders"])  # fmt: skip
    return summary


# ------------------------------------------------------------------------------------------------ joint
def _joint_tracklets(runs: list[CameraRun]) -> tuple[list[Fragment], torch.Tensor]:
    """All cameras' kept tracklets in ``(camid, start, track_id)`` order with their embeddings.

    Raises:
        ValueError: no tracklet left in any video.
    """
    pairs = [(f, r.embeddings[i]) for r in runs for i, f in enumerate(r.tracklets.kept)]
    if not pairs:
        raise ValueError(f"no tracklet left in {[str(r.camera.video) for r in runs]}: "
                         f"{sum(len(r.rows) for r in runs)} tracked boxes, all in tracks too short or too static "
                         f"(tracklets.min_length / tracklets.min_displacement)")  # fmt: skip
    pairs.sort(key=lambda p: (p[0].camid, p[0].start, p[0].track_id))
    return [p[0] for p in pairs], torch.stack([p[1] for p in pairs])


def _label(runs: list[CameraRun], fragments: list[Fragment], ids: Identities) -> None:
    for f, lab in zip(fragments, ids.labels):
        f.identity = int(lab)
    ident_of = {(f.camid, f.track_id): f.identity for f in fragments}
    for r in (r for run in runs for r in run.rows):
        r.identity = ident_of.get((r.camid, r.track_id), -1)


def _write_outputs(st: Stages, runs: list[CameraRun], fragments: list[Fragment], emb: torch.Tensor,
                   ids: Identities, gts: dict[int, MOTSequence], out: Path) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """tracks.csv, tracklets.npz, distances.npy, identity folders; per camera the MOT files, counts, scores and
    count plot. Returns ``(counts of every camera, per-camera scores)``."""
    fps = {r.camera.camid: r.camera.info.fps for r in runs}
    write_track_table(out / "tracks.csv", [row for r in runs for row in r.rows], fps)
    _write_npz(out / "tracklets.npz", fragments, emb.numpy(), fps)
    np.save(out / "distances.npy", ids.distances.astype(np.float32))
    write_identity_folders(fragments, out / "identities", len(runs))
    all_counts, scored, line_ids = [], [], []
    for run in sorted(runs, key=lambda r: r.camera.camid):
        cam, suffix = run.camera, camera_suffix(run.camera.camid, len(runs) > 1)
        kept = [r for r in run.rows if r.identity >= 0]
        counts = st.counter(cam, kept, span=run.span)
        run.line = st.counter.crossings(cam, kept)
        if run.line is not None:
            counts = window_line_counts(counts, run.line["events"])
            line_ids += run.line["per_identity"]
        all_counts += counts
        mot = {"raw": write_mot(out / f"mot_raw{suffix}.txt", kept, ids="track"),
               "reid": write_mot(out / f"mot_reid{suffix}.txt", kept, ids="identity")}  # fmt: skip
        truth = None
        if cam.camid in gts:
            res = st.scorer(gts[cam.camid], mot, run.frames, counts, cam, st.counter.window_s, span=run.span)
            res.update(camid=cam.camid, video=str(cam.video))
            truth = res.pop("truth_per_window")
            if run.line is not None:
                res["line"] = _line_error(st.counter, run, gts[cam.camid])
            scored.append(res)
        plot_counts(out / f"counts{suffix}.png", counts, run.thumbnails,
                    (np.asarray(run.times_s), np.asarray(run.tracked)),
                    title=f"{cam.video.name}: distinct individuals per {st.counter.window_s:g} s window",
                    truth=truth)  # fmt: skip
    write_counts(out / "counts.csv", all_counts)
    if st.counter.line is not None:
        write_line_counts(out / "line_counts.csv", line_ids)
    return all_counts, scored


def _line_error(counter, run: CameraRun, seq: MOTSequence) -> dict:
    """The line crossings of the re-ID identities against those of the ground-truth ids (the same
    :func:`~vidreid.video.count.line_crossings` on the ground-truth boxes of the processed frames)."""
    g = gt_rows(read_mot(seq.gt_path), run.frames)
    truth = line_crossings([r.frame for r in g], [r.identity for r in g],
                           np.array([[r.x1, r.y1, r.x2, r.y2] for r in g], np.float64).reshape(-1, 4), counter.line,
                           counter.line_anchors, counter.line_min_frames)  # fmt: skip
    pred = run.line
    return {"in": pred["in"], "out": pred["out"], "truth_in": truth["in"], "truth_out": truth["out"],
            "abs_error": abs(pred["in"] - truth["in"]) + abs(pred["out"] - truth["out"])}  # fmt: skip


def _render(st: Stages, runs: list[CameraRun], counts: list[dict], out: Path, settings: dict) -> dict[str, str]:
    rendered: dict[str, str] = {}
    for run in runs:
        cam = run.camera
        line = run.line
        rendered |= st.renderer(out, cam, [r for r in run.rows if r.identity >= 0],
                                [c for c in counts if c["camid"] == cam.camid], st.counter.window_s,
                                settings["frame_stride"], settings["start"], camera_suffix(cam.camid, len(runs) > 1),
                                span=run.span, line=st.counter.line,
                                line_events=line["events"] if line else ())  # fmt: skip
    return rendered


def _write_npz(path: Path, fragments: list[Fragment], emb: np.ndarray, fps: dict[int, float]) -> None:
    np.savez(
        path,
        embeddings=emb.astype(np.float32),
        pids=np.array([f.identity for f in fragments], np.int64),
        camids=np.array([f.camid for f in fragments], np.int64),
        track_ids=np.array([f.track_id for f in fragments], np.int64),
        paths=np.array([str(f.folder) for f in fragments], dtype=np.str_),
        timestamps=np.array([(f.start + f.end) / 2 / fps[f.camid] for f in fragments], np.float64),
        start_frame=np.array([f.start for f in fragments], np.int64),
        end_frame=np.array([f.end for f in fragments], np.int64),
        num_frames=np.array([len(f) for f in fragments], np.int64),
    )


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the run folder ``root`` when inside it (crops of a ``step=associate`` run stay in
    their per-video folders: absolute there)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(Path(path).resolve())


def _identities(fragments: list[Fragment], fps: dict[int, float], out: Path) -> list[dict]:
    by_id: dict[int, list[Fragment]] = {}
    for f in fragments:
        by_id.setdefault(f.identity, []).append(f)
    res = []
    for i in sorted(by_id):
        fs = by_id[i]
        res.append(dict(
            identity=i,
            cameras=sorted({f.camid for f in fs}),
            first_s=round(min(f.start / fps[f.camid] for f in fs), 3),
            last_s=round(max(f.end / fps[f.camid] for f in fs), 3),
            num_boxes=int(sum(len(f) for f in fs)),
            tracklets=[dict(camid=f.camid, track_id=f.track_id, start_frame=f.start, end_frame=f.end,
                            num_boxes=len(f), folder=_relative(f.folder, out))
                       for f in fs],
        ))  # fmt: skip
    return res


def _summary(cfg: DictConfig, st: Stages, settings: dict, runs: list[CameraRun], fragments: list[Fragment],
             ids: Identities, counts: list[dict], timings: dict[str, float], rendered: dict[str, str]) -> dict:  # fmt: skip
    rows = [row for r in runs for row in r.rows]
    a = st.associator
    return dict(
        videos=[str(r.camera.video) for r in runs],
        camids=[r.camera.camid for r in runs],
        checkpoint=settings["checkpoint"],
        crop_size=settings["crop_size"],
        frames=[r.camera.info.num_frames for r in runs],
        frames_processed=[len(r.frames) for r in runs],
        frame_stride=settings["frame_stride"],
        detector=settings["detector"],
        crop_background=settings.get("crop_background"),  # absent in step=tracklets folders written before it
        tracked_boxes=sum(r.identity >= 0 for r in rows),
        raw_tracks_before_filter=len(fragments) + sum(len(r.tracklets.dropped) for r in runs),
        raw_tracks=len(fragments),
        identities=len({f.identity for f in fragments}),
        association=dict(threshold=a.threshold, linkage=a.linkage, time_constraint=a.time_constraint,
                         threshold_used=round(ids.threshold, 4), cannot_link_pairs=ids.cannot_link_pairs),
        window_s=st.counter.window_s,
        interpolated_boxes=sum(r.interpolated for r in rows),
        static_tracklets_kept=sum("static" in f.meta for f in fragments),
        line=None if st.counter.line is None else dict(
            line=st.counter.line, **{"in": sum(r.line["in"] for r in runs), "out": sum(r.line["out"] for r in runs)}),
        individuals_per_window=[c["individuals"] for c in counts],
        raw_tracks_per_window=[c["raw_tracks"] for c in counts],
        timings_s={k: round(v, 2) for k, v in timings.items()},
        rendered=rendered,
        read=[r.read.to_dict() if r.read is not None else None for r in runs],
        damaged_videos=[r.read.message() for r in runs if r.read is not None and r.read.damaged],
    )  # fmt: skip


def _write_reports(summary: dict, scored: list[dict], fragments: list[Fragment], fps: dict[int, float],
                   out: Path) -> None:  # fmt: skip
    """metrics.json (with ground truth) and its console table, identities.json, summary.json, the contact sheet."""
    if scored:
        metrics = {"cameras": scored}
        if len(scored) == 1:  # the usual single-video run: its numbers at the top level too
            metrics.update({k: scored[0][k] for k in ("tracking", "tracking_persons", "count") if k in scored[0]})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        summary["metrics"] = {f"cam{m['camid']}": {k: {n: m["tracking"][k].get(n) for n in ("HOTA", "MOTA", "IDF1")}
                                                   for k in ("raw", "reid")} | {"count_mae": m["count"]["mae"]}
                                                  | ({"reid_persons": {n: m["tracking_persons"]["reid"].get(n)
                                                                       for n in ("HOTA", "MOTA", "IDF1")}}
                                                     if "tracking_persons" in m else {})
                              for m in scored}  # fmt: skip
        for m in scored:
            print_score_table(m["tracking"], title=f"{Path(m['video']).name} vs {m['gt']} ({m['frames_scored']} frames "
                                                   f"scored; count MAE per window {m['count']['mae']:.3f})")  # fmt: skip
            if "tracking_persons" in m:
                print_score_table(m["tracking_persons"], title="... against the person-level ground truth "
                                                               "(score.persons: one id per person across re-entries)")
    identities = _identities(fragments, fps, out)
    (out / "identities.json").write_text(json.dumps({"summary": summary, "identities": identities}, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    identity_sheet(identities, out, out / "identities_merged.png")
    log.info("%d raw tracks -> %d identities; per-window individuals: %s", summary["raw_tracks"],
             summary["identities"], summary["individuals_per_window"])  # fmt: skip
    for msg in summary["damaged_videos"]:  # said again at the end, beside the results it limits
        log.warning("damaged video, counts and scores cover the frames read only: %s", msg)
    log.info("outputs in %s (%.1f s)", out, summary["timings_s"]["total_s"])
