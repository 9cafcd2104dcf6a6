"""``track.py``'s job: video(s) -> detections -> tracks -> tracklets -> embeddings -> identities -> counts and
renders. Each stage is its own module of :mod:`vidreid.video`; this one wires them from the Hydra config
(``conf/track.yaml``) and writes the run folder:

======================  ======================================================================================
``tracks.csv``          camid, frame, time_s, track_id, identity, box, score — one line per tracked box
                        (identity -1: the track was dropped as too short or static)
``identities.json``     per identity its tracklets (camera, tracker id, frames, folder); summary numbers
``tracklets.npz``       tracklet embeddings with pids (= identity), camids, paths, timestamps (``vidreid.deploy.index``)
``tracklets/``          crops per raw track (PRID ``multi_shot`` layout), ``identities/`` crops per identity
``counts.csv/.png``     distinct individuals (and raw tracker ids) per ``count.window_s`` window, per camera
                        (with ``gt``: the ground truth's count per window too, as a line in the plot)
``mot_raw.txt``         the tracks in MOTChallenge format with the tracker's ids (``frame`` 1-based, ``id``, ``left,
                        top, width, height``, ``conf``, -1, -1, -1); ``mot_reid.txt`` the same boxes with the re-ID
                        identities as ids (``_cam_a`` ... suffixes with several cameras)
``metrics.json``        with ``gt=<gt.txt or MOT sequence folder>``: both MOT files scored by TrackEval (HOTA, MOTA,
                        IDF1, IDSW, precision, recall, ...; :mod:`vidreid.video.mot`) and the count error per window
``annotated*.mp4/.gif`` the video with identity boxes; ``frames/`` a few annotated PNG stills
``identities_merged``   contact sheet of the identities made of several tracklets (first/last crop of each)
``summary.json``        totals, per-stage wall times, settings
======================  ======================================================================================
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from vidreid.video.associate import (
    agglomerate,
    association_constraints,
    auto_threshold,
    cannot_link,
    cosine_distances,
)
from vidreid.video.count import count_error, plot_counts, window_counts, write_counts
from vidreid.video.mot import (
    MOTSequence,
    gt_rows,
    print_score_table,
    read_mot,
    resolve_gt,
    score_mot,
    sequence_video,
    write_mot,
)
from vidreid.video.reader import VideoInfo, iter_frames, probe_video
from vidreid.video.render import identity_sheet, render_video
from vidreid.video.track import ByteTracker
from vidreid.video.tracklets import (
    CropWriter,
    Fragment,
    TrackRow,
    build_fragments,
    camera_folder,
    frame_files,
    write_identity_folders,
    write_track_table,
)

log = logging.getLogger(__name__)

__all__ = ["check_checkpoint_size", "run_track"]


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


def _threshold(acfg: DictConfig, dist: np.ndarray, forbid: np.ndarray) -> tuple[float, int]:
    """The merge threshold: ``associate.threshold`` (a number) or, for ``auto``, :func:`auto_threshold` with
    ``associate.auto_fallback`` when the video has too few co-occurring tracklet pairs."""
    n_neg = int(np.triu(forbid, k=1).sum())
    if str(acfg.threshold) != "auto":
        try:
            return float(acfg.threshold), n_neg
        except ValueError:
            raise ValueError(f"associate.threshold={acfg.threshold!r}: expected a cosine distance or 'auto'") from None
    thr, n_neg = auto_threshold(dist, forbid, acfg.auto_quantile, acfg.auto_min_pairs)
    if thr is None:
        log.warning("associate.threshold=auto: only %d co-occurring tracklet pairs (< %d); using auto_fallback=%s",
                    n_neg, acfg.auto_min_pairs, acfg.auto_fallback)  # fmt: skip
        return float(acfg.auto_fallback), n_neg
    log.info("associate.threshold=auto: %.4f = %g-quantile of %d co-occurring (different-person) tracklet pairs",
             thr, acfg.auto_quantile, n_neg)  # fmt: skip
    return thr, n_neg


def _trained_size(path: Path) -> tuple[int, int] | None:
    """The ``(H, W)`` input size saved in a ``train.py`` checkpoint (:mod:`vidreid.deploy.inference`), ``None`` if absent."""
    from vidreid.deploy.inference import checkpoint_settings, load_checkpoint

    ckpt = load_checkpoint(path)  # KeyError naming the file for a foreign checkpoint
    try:
        return tuple(int(v) for v in checkpoint_settings(ckpt, path).size)
    except KeyError:
        return None


def _subsample(paths: list[Path], max_frames: int | None) -> list[Path]:
    if not max_frames or len(paths) <= max_frames:
        return paths
    idx = np.linspace(0, len(paths) - 1, max_frames).round().astype(int)
    return [paths[i] for i in idx]


def run_track(cfg: DictConfig) -> dict[str, Any]:
    """Run the video -> identities pipeline of ``cfg`` (``conf/track.yaml``); return the summary dict.

    Raises:
        FileNotFoundError: a missing video or checkpoint. ValueError: an undecodable or empty video, a
            checkpoint of another input size, no detections in a video, a window longer than a video,
            mismatched ``camids``.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = [sequence_video(Path(v)) for v in _as_list(cfg.videos)]
    if not videos:
        raise ValueError("no input video: set videos=PATH or videos=[PATH_CAM0,PATH_CAM1,...]")
    camids = [int(c) for c in _as_list(cfg.camids)] or list(range(len(videos)))
    if len(camids) != len(videos) or len(set(camids)) != len(camids):
        raise ValueError(f"camids={camids} must give one distinct camera id per video ({len(videos)} videos)")
    if cfg.checkpoint is None:
        raise ValueError("no re-ID checkpoint: pass checkpoint=PATH (a train.py .ckpt, e.g. "
                         "logs/train/runs/<run>/checkpoints/last.ckpt)")  # fmt: skip
    size = check_checkpoint_size(cfg.checkpoint, cfg.tracklets.size)
    # probe every video and check the count window before any heavy work
    infos: dict[int, VideoInfo] = {}
    for cam, v in zip(camids, videos):
        info = probe_video(v, default_fps=cfg.reader.default_fps)
        if cfg.count.window_s is not None and cfg.count.window_s > info.duration_s + 1e-9:
            raise ValueError(f"count.window_s={cfg.count.window_s} s is longer than video {v} ({info.num_frames} "
                             f"frames at {info.fps:g} fps = {info.duration_s:.2f} s); expected at most "
                             f"{info.duration_s:.2f} s")  # fmt: skip
        infos[cam] = info
        log.info("camera %d: %s (%d frames, %g fps, %dx%d)", cam, v, info.num_frames, info.fps, info.width,
                 info.height)  # fmt: skip
    gts = _ground_truths(cfg, videos, camids, infos)
    stride, start, max_frames = int(cfg.reader.stride), int(cfg.reader.start), cfg.reader.max_frames
    for stale in ("tracklets", "identities", "frames"):  # a rerun into the same folder starts clean
        shutil.rmtree(out / stale, ignore_errors=True)
    writer = CropWriter(out / "tracklets", size, quality=cfg.tracklets.jpeg_quality, margin=cfg.tracklets.margin)
    rows: list[TrackRow] = []
    per_frame: dict[int, tuple[list[float], list[int]]] = {}
    thumbs: dict[int, list[tuple[float, np.ndarray]]] = {}
    n_processed: dict[int, int] = {}
    processed: dict[int, list[int]] = {}
    stage = dict.fromkeys(("read", "detect", "track", "crop"), 0.0)  # seconds per stage, all cameras
    t0 = time.perf_counter()
    for cam, v in zip(camids, videos):
        import cv2

        info = infos[cam]
        detector = instantiate(cfg.detector)
        tracker = ByteTracker(fps=info.fps / stride, **OmegaConf.to_container(cfg.tracker, resolve=True))
        n_thumbs = int(cfg.count.thumbnails)
        thumb_at = set(np.linspace(0, info.num_frames - 1, n_thumbs + 2)[1:-1].round().astype(int).tolist())
        n_det, n = 0, 0
        ts, cnt = [], []
        last_log = time.perf_counter()
        frames_it = iter_frames(v, stride=stride, start=start, max_frames=max_frames)
        done: list[int] = []
        while True:
            ta = time.perf_counter()
            nxt = next(frames_it, None)
            tb = time.perf_counter()
            stage["read"] += tb - ta
            if nxt is None:
                break
            idx, frame = nxt
            done.append(idx)
            dets = detector(frame, idx)
            tc = time.perf_counter()
            n_det += len(dets)
            tracked = tracker.update(dets)
            td = time.perf_counter()
            writer.write(frame, cam, idx, tracked.boxes, tracked.track_ids)
            stage["detect"] += tc - tb
            stage["track"] += td - tc
            stage["crop"] += time.perf_counter() - td
            for (x1, y1, x2, y2), s, tid in zip(tracked.boxes, tracked.scores, tracked.track_ids):
                rows.append(TrackRow(cam, idx, int(tid), float(x1), float(y1), float(x2), float(y2), float(s)))
            ts.append(idx / info.fps)
            cnt.append(len(tracked))
            if any(abs(idx - a) < stride and idx >= a for a in thumb_at):
                small = cv2.resize(frame, (160, round(160 * frame.shape[0] / frame.shape[1])))
                thumbs.setdefault(cam, []).append((idx / info.fps, small[:, :, ::-1].copy()))
            n += 1
            if time.perf_counter() - last_log > 30:
                log.info("camera %d: frame %d/%d, %d detections so far", cam, idx, info.num_frames, n_det)
                last_log = time.perf_counter()
        n_processed[cam] = n
        processed[cam] = done
        per_frame[cam] = (ts, cnt)
        if n_det == 0:
            raise ValueError(f"no people detected in {v} ({n} frames processed with "
                             f"{type(detector).__name__}); expected a video with visible people (for small "
                             f"people raise detector.upscale, or use another detector=...)")  # fmt: skip
        log.info("camera %d: %d frames processed, %d detections, %d tracked boxes", cam, n, n_det,
                 sum(r.camid == cam for r in rows))  # fmt: skip
    timings["detect_track_crop_s"] = time.perf_counter() - t0
    timings.update({f"{k}_s": v for k, v in stage.items()})
    fragments, dropped = build_fragments(rows, cfg.tracklets.min_length, cfg.tracklets.min_displacement)
    writer.remove(dropped)
    writer.attach(fragments)
    log.info("%d tracklets kept, %d dropped (shorter than %d boxes or moving < %g px)", len(fragments), len(dropped),
             cfg.tracklets.min_length, cfg.tracklets.min_displacement)  # fmt: skip
    if not fragments:
        raise ValueError(f"no tracklet left in {[str(v) for v in videos]}: {len(rows)} tracked boxes, all in tracks "
                         f"shorter than tracklets.min_length={cfg.tracklets.min_length} boxes or moving less than "
                         f"tracklets.min_displacement={cfg.tracklets.min_displacement} px")  # fmt: skip

    # embed + associate
    from vidreid.deploy.inference import embed

    t0 = time.perf_counter()
    items = [_subsample(frame_files(f.folder), cfg.embed.max_frames) for f in fragments]
    emb = embed(cfg.checkpoint, items, batch_size=cfg.embed.batch_size, device=cfg.embed.device,
                progress=cfg.embed.progress, backend=cfg.embed.get("backend", "pytorch"),
                precision=cfg.embed.get("precision", "fp32"), calibration_clips=cfg.embed.get("calibration_clips", 64),
                cache_dir=cfg.embed.get("cache_dir"))  # fmt: skip
    timings["embed_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist = cosine_distances(emb)
    forbid = cannot_link([f.camid for f in fragments], [f.start for f in fragments], [f.end for f in fragments])
    threshold, n_neg = _threshold(cfg.associate, dist, forbid)
    acfg = cfg.associate
    rules = association_constraints(
        [f.camid for f in fragments], [f.start for f in fragments], [f.end for f in fragments],
        np.array([f.boxes[0] for f in fragments]), np.array([f.boxes[-1] for f in fragments]),
        [infos[f.camid].fps for f in fragments], time_constraint=bool(acfg.time_constraint),
        motion=bool(acfg.get("motion_gate", True)), max_speed=float(acfg.get("max_speed", 2.0)),
        margin=float(acfg.get("motion_margin", 1.0)), max_gap_s=acfg.get("max_gap_s"),
    )  # fmt: skip
    labels = agglomerate(dist, threshold, rules, acfg.linkage)
    for f, lab in zip(fragments, labels):
        f.identity = int(lab)
    ident_of = {(f.camid, f.track_id): f.identity for f in fragments}
    for r in rows:
        r.identity = ident_of.get((r.camid, r.track_id), -1)
    n_ids = int(labels.max()) + 1
    timings["associate_s"] = time.perf_counter() - t0
    log.info("%d tracklets -> %d identities (threshold %.3f, %s linkage)", len(fragments), n_ids, threshold,
             cfg.associate.linkage)  # fmt: skip

    # outputs
    t0 = time.perf_counter()
    fps = {cam: infos[cam].fps for cam in camids}
    write_track_table(out / "tracks.csv", rows, fps)
    _write_npz(out / "tracklets.npz", fragments, emb.numpy(), fps)
    np.save(out / "distances.npy", dist.astype(np.float32))
    write_identity_folders(fragments, out / "identities", len(camids))
    multi = len(camids) > 1
    all_counts: list[dict] = []
    scored: list[dict] = []
    for cam in camids:
        kept = [r for r in rows if r.camid == cam and r.identity >= 0]
        info = infos[cam]
        counts = window_counts([r.frame for r in kept], [r.identity for r in kept], [r.track_id for r in kept],
                               info.fps, cfg.count.window_s, info.num_frames, camid=cam)  # fmt: skip
        all_counts += counts
        suffix = f"_{camera_folder(cam)}" if multi else ""
        mot = {"raw": write_mot(out / f"mot_raw{suffix}.txt", kept, ids="track"),
               "reid": write_mot(out / f"mot_reid{suffix}.txt", kept, ids="identity")}  # fmt: skip
        truth = None
        if cam in gts:
            res = _score_camera(gts[cam], mot, processed[cam], counts, info, cfg.count.window_s, cam)
            res.update(camid=cam, video=str(info.path))
            scored.append(res)
            truth = res["count"]["truth"]
        plot_counts(out / f"counts{suffix}.png", counts, thumbs.get(cam, []),
                    (np.asarray(per_frame[cam][0]), np.asarray(per_frame[cam][1])),
                    title=f"{infos[cam].path.name}: distinct individuals per {cfg.count.window_s:g} s window",
                    truth=truth)  # fmt: skip
    write_counts(out / "counts.csv", all_counts)
    timings["write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rendered: dict[str, str] = {}
    if cfg.render.enabled:
        (out / "frames").mkdir(exist_ok=True)
        for cam, v in zip(camids, videos):
            suffix = f"_{camera_folder(cam)}" if multi else ""
            info = infos[cam]
            stills = {int(round(s * info.fps)): out / "frames" / f"frame{suffix}_{int(round(s * info.fps)):04d}.png"
                      for s in cfg.render.stills_s if s * info.fps < info.num_frames}  # fmt: skip
            files = render_video(
                v, [r for r in rows if r.camid == cam and r.identity >= 0], info.fps,
                out / f"annotated{suffix}.mp4" if cfg.render.video else None,
                counts=[c for c in all_counts if c["camid"] == cam], window_s=cfg.count.window_s,
                gif=out / f"annotated{suffix}.gif" if cfg.render.gif else None,
                gif_range_s=tuple(cfg.render.gif_range_s), gif_width=cfg.render.gif_width,
                gif_stride=cfg.render.gif_stride, stills=stills, still_width=cfg.render.still_width, stride=stride,
                start=start,
            )  # fmt: skip
            rendered.update({f"{k}{suffix}": str(p) for k, p in files.items()})
    timings["render_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary = _summary(cfg, videos, camids, infos, n_processed, rows, fragments, dropped, all_counts, timings,
                       rendered, size)  # fmt: skip
    summary["association"].update(threshold_used=round(threshold, 4), cannot_link_pairs=n_neg)
    if scored:
        metrics = {"cameras": scored}
        if len(scored) == 1:  # the usual single-video run: its numbers at the top level too
            metrics.update({k: scored[0][k] for k in ("tracking", "count")})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        summary["metrics"] = {f"cam{m['camid']}": {k: {n: m["tracking"][k].get(n) for n in ("HOTA", "MOTA", "IDF1")}
                                                   for k in ("raw", "reid")} | {"count_mae": m["count"]["mae"]}
                              for m in scored}  # fmt: skip
        for m in scored:
            print_score_table(m["tracking"], title=f"{Path(m['video']).name} vs {m['gt']} ({m['frames_scored']} frames "
                                                   f"scored; count MAE per window {m['count']['mae']:.3f})")  # fmt: skip
    identities = _identities(fragments, fps, out)
    (out / "identities.json").write_text(json.dumps({"summary": summary, "identities": identities}, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    identity_sheet(identities, out, out / "identities_merged.png")
    log.info("%d raw tracks -> %d identities; per-window individuals: %s", summary["raw_tracks"],
             summary["identities"], [c["individuals"] for c in all_counts])  # fmt: skip
    log.info("outputs in %s (%.1f s)", out, timings["total_s"])
    return summary


def _ground_truths(cfg: DictConfig, videos: list[Path], camids: list[int], infos: dict[int, VideoInfo]
                   ) -> dict[int, MOTSequence]:  # fmt: skip
    """``cfg.gt`` per camera: one path (single video) or a list aligned with ``videos`` (``null`` entries: not
    scored). Each is read once here so that a bad file fails before any heavy work."""
    gt = _as_list(cfg.get("gt"))
    if not gt:
        return {}
    if len(gt) != len(videos):
        raise ValueError(f"gt={gt}: expected one ground truth per video ({len(videos)} videos; use null for a video "
                         f"without ground truth)")  # fmt: skip
    out = {}
    for cam, g in zip(camids, gt):
        if g is None:
            continue
        seq = resolve_gt(g)
        arr = read_mot(seq.gt_path)
        n = infos[cam].num_frames
        if seq.num_frames is not None and seq.num_frames != n:
            log.warning("ground truth %s: seqinfo.ini gives %d frames, video %s has %d", seq.gt_path, seq.num_frames,
                        infos[cam].path, n)  # fmt: skip
        if len(arr) and int(arr[:, 0].max()) > n:
            raise ValueError(f"ground truth {seq.gt_path} has boxes in MOT frame {int(arr[:, 0].max())} but video "
                             f"{infos[cam].path} has {n} frames (MOT frame f = video frame f-1); expected the "
                             f"ground truth of this video")  # fmt: skip
        out[cam] = seq
    return out


def _score_camera(seq: MOTSequence, mot: dict[str, Path], frames: list[int], counts: list[dict], info: VideoInfo,
                  window_s: float, cam: int) -> dict:  # fmt: skip
    """TrackEval scores of one camera's MOT files on its processed ``frames`` and the count error per window
    (ground-truth individuals counted on the same frames)."""
    try:
        tracking = score_mot(seq, mot, frames=frames)
    except ValueError:  # e.g. one identity twice in a frame (associate.time_constraint=false): score each alone
        tracking = {}
        for k, p in mot.items():
            try:
                tracking.update(score_mot(seq, {k: p}, frames=frames))
            except ValueError as e:
                log.error("cannot score %s against %s: %s", p, seq.gt_path, e)
                tracking[k] = {"error": str(e)}
    g = gt_rows(read_mot(seq.gt_path), frames)
    truth = window_counts([r.frame for r in g], [r.identity for r in g], [r.track_id for r in g], info.fps, window_s,
                          info.num_frames, camid=cam)  # fmt: skip
    return dict(gt=str(seq.gt_path), frames_scored=len(frames), tracking=tracking,
                count=count_error(counts, truth), count_raw_tracks=count_error(counts, truth, key="raw_tracks"),
                mot_files={k: str(p) for k, p in mot.items()})


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
                            num_boxes=len(f), folder=str(Path(f.folder).relative_to(out)))
                       for f in fs],
        ))  # fmt: skip
    return res


def _summary(cfg, videos, camids, infos, n_processed, rows, fragments, dropped, counts, timings, rendered, size):
    return dict(
        videos=[str(v) for v in videos],
        camids=camids,
        checkpoint=str(cfg.checkpoint),
        crop_size=list(size),
        frames=[infos[c].num_frames for c in camids],
        frames_processed=[n_processed[c] for c in camids],
        frame_stride=int(cfg.reader.stride),
        detector=OmegaConf.to_container(cfg.detector, resolve=True),
        tracked_boxes=sum(r.identity >= 0 for r in rows),
        raw_tracks_before_filter=len(fragments) + len(dropped),
        raw_tracks=len(fragments),
        identities=len({f.identity for f in fragments}),
        association=dict(threshold=cfg.associate.threshold, linkage=cfg.associate.linkage,
                         time_constraint=bool(cfg.associate.time_constraint)),
        window_s=cfg.count.window_s,
        individuals_per_window=[c["individuals"] for c in counts],
        raw_tracks_per_window=[c["raw_tracks"] for c in counts],
        timings_s={k: round(v, 2) for k, v in timings.items()},
        rendered=rendered,
    )  # fmt: skip
