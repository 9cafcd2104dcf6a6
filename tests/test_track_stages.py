"""track.py as stages: a stage swaps by ``_target_`` from the command line, and the two-step run (one job per video
through Hydra's submitit_local launcher, then ``step=associate``) gives the one-command run's identities, tracks.csv
and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("supervision")

from tests.video_synth import Walker, render_clip, write_det_txt, write_gt_txt, write_video  # noqa: E402
from vidreid.runs.track_stages import StageClock  # noqa: E402
from vidreid.video.track import ByteTracker, TrackedBoxes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class OffsetTracker(ByteTracker):
    """ByteTrack with every track id shifted by 1000: a tracker plugged in by ``tracker._target_``."""

    def update(self, dets) -> TrackedBoxes:
        t = super().update(dets)
        return TrackedBoxes(t.boxes, t.scores, t.track_ids + 1000)

    def pop_backfill(self):
        return [(call, box, score, tid + 1000) for call, box, score, tid in super().pop_backfill()]


def _clip(tmp_path: Path, n_videos: int = 1):
    """Two walkers (person 1 hidden in frames 10-15: two fragments) in ``n_videos`` copies of one synthetic clip,
    its det.txt (ground-truth boxes, jittered) and gt.txt."""
    walkers = [Walker(1, 11, 30, 290, 130, 80, hidden=tuple(range(10, 16))), Walker(2, 22, 290, 30, 220, 100)]
    frames, gt = render_clip(walkers)
    videos = [write_video(tmp_path / f"cam{i}.avi", frames) for i in range(n_videos)]
    return videos, write_det_txt(tmp_path / "det.txt", gt), write_gt_txt(tmp_path / "gt.txt", gt)


def _common(ckpt: Path, det: Path) -> list[str]:
    return [f"checkpoint={ckpt}", "detector=mot_file", f"detector.path={det}", "reader.stride=1",
            "tracker.lost_track_buffer=3", "tracker.minimum_consecutive_frames=1", "count.window_s=1.0",
            "render.enabled=false", "associate.threshold=0.5", "refine.interpolate=null", "refine.link=false"]  # fmt: skip


def test_stage_clock_sums_calls_and_iterations():
    clock = StageClock()
    f = clock.wrap("f", lambda x: x + 1)
    assert [f(i) for i in range(3)] == [1, 2, 3]
    assert list(clock.iterate("it", iter([4, 5]))) == [4, 5]
    with clock("block"):
        pass
    assert set(clock.as_dict()) == {"f_s", "it_s", "block_s"} and all(v >= 0 for v in clock.seconds.values())


def test_a_stage_swaps_by_target_from_the_command_line(tmp_path, tiny_checkpoint):
    """``tracker._target_=...`` replaces the tracker: every track id in tracks.csv then comes from it (>= 1000),
    and the rest of the pipeline runs on its tracks unchanged (3 raw tracks -> 2 identities)."""
    from tests.conftest import compose
    from vidreid.runs.track import run_track
    from vidreid.video.tracklets import read_track_table

    (video,), det, _ = _clip(tmp_path)
    out = tmp_path / "run"
    cfg = compose("track", _common(tiny_checkpoint, det) + [f"videos={video}",
                                                            "tracker._target_=tests.test_track_stages.OffsetTracker"],
                  output_dir=out)  # fmt: skip
    s = run_track(cfg)
    rows = read_track_table(out / "tracks.csv")
    assert rows and all(r.track_id > 1000 for r in rows)
    assert s["raw_tracks"] == 3 and s["identities"] == 2
    assert set(s["timings_s"]) >= {"read_s", "detect_s", "track_s", "crop_s", "embed_s", "associate_s", "write_s",
                                   "render_s", "detect_track_crop_s", "total_s"}  # fmt: skip


def test_two_step_run_through_submitit_local_equals_the_one_command_run(tmp_path, tiny_checkpoint):
    """Per-video jobs (``--multirun step=tracklets videos=a,b hydra/launcher=submitit_local``) then
    ``step=associate runs=[...]``: the same tracks.csv, identities and metrics.json as ``track.py`` with both
    videos in one process."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (sweep extra)")
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    (v0, v1), det, gt = _clip(tmp_path, 2)
    one = tmp_path / "one"
    s1 = run_track(compose("track", _common(tiny_checkpoint, det) + [f"videos=[{v0},{v1}]", f"gt=[{gt},{gt}]"],
                           output_dir=one))  # fmt: skip
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "track.py", "--multirun", "step=tracklets", f"videos={v0},{v1}",
           "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10",
           *_common(tiny_checkpoint, det)]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    folders = [sweep / "0", sweep / "1"]
    for f in folders:
        assert (f / "camera_run.json").is_file() and (f / "tracks.csv").is_file(), list(f.iterdir())
        assert json.loads((f / "camera_run.json").read_text())["video"] in (str(v0), str(v1))
    joint = tmp_path / "joint"
    s2 = run_track(compose("track", _common(tiny_checkpoint, det) + ["step=associate", f"runs=[{folders[0]},{folders[1]}]",
                                                                     f"gt=[{gt},{gt}]"], output_dir=joint))  # fmt: skip
    assert (joint / "tracks.csv").read_text() == (one / "tracks.csv").read_text()
    assert json.loads((joint / "metrics.json").read_text()) | {"cameras": None} == \
        json.loads((one / "metrics.json").read_text()) | {"cameras": None}  # fmt: skip
    m1, m2 = (json.loads((d / "metrics.json").read_text())["cameras"] for d in (one, joint))
    assert [c["tracking"] for c in m1] == [c["tracking"] for c in m2] and [c["count"] for c in m1] == [c["count"] for c in m2]
    strip = lambda ids: [{k: v for k, v in i.items() if k != "tracklets"} | {"tracklets": [  # noqa: E731
        {k: v for k, v in t.items() if k != "folder"} for t in i["tracklets"]]} for i in ids]
    i1, i2 = (json.loads((d / "identities.json").read_text())["identities"] for d in (one, joint))
    assert strip(i1) == strip(i2) and s1["identities"] == s2["identities"] == 2
    assert all(i["cameras"] == [0, 1] for i in i1)  # the same people in both cameras: one identity each
    np.testing.assert_array_equal(np.load(one / "tracklets.npz")["embeddings"],
                                  np.load(joint / "tracklets.npz")["embeddings"])  # fmt: skip


def test_associate_step_names_a_folder_that_is_not_a_tracklets_run(tmp_path):
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    (tmp_path / "empty").mkdir()
    cfg = compose("track", ["step=associate", f"runs=[{tmp_path / 'empty'}]", "render.enabled=false"],
                  output_dir=tmp_path / "run")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"empty/camera_run.json not found.*step=tracklets"):
        run_track(cfg)
    with pytest.raises(ValueError, match=r"step='both'"):
        run_track(compose("track", ["step=both"], output_dir=tmp_path / "run2"))


def test_a_missing_ground_truth_is_named_before_the_checkpoint_is_read(tmp_path):
    """Inputs are checked cheapest first: a wrong ``gt=`` path is reported before the checkpoint is loaded or any
    video decoded (here the checkpoint does not exist either, and the gt error comes first)."""
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    (video,), _, _ = _clip(tmp_path)
    cfg = compose("track", [f"videos={video}", f"checkpoint={tmp_path / 'no.ckpt'}", f"gt={tmp_path / 'nogt'}",
                            "render.enabled=false"], output_dir=tmp_path / "run")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"ground truth not found: .*nogt"):
        run_track(cfg)


def test_a_run_capped_before_the_end_is_scored_and_plotted(tmp_path, tiny_checkpoint):
    """``reader.max_frames`` stops reading in window 1 of 3: the count error covers the windows read (2), the
    count plot still draws the ground truth of all 3 windows (this crashed: 2 truth values for 3 windows)."""
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    (video,), det, gt = _clip(tmp_path)
    out = tmp_path / "run"
    run_track(compose("track", _common(tiny_checkpoint, det) + [f"videos={video}", f"gt={gt}", "reader.max_frames=12"],
                      output_dir=out))  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert m["cameras"][0]["frames_scored"] == 12 and len(m["count"]["truth"]) == 2 and m["count"]["truth"] == [2, 1]
    assert "truth_per_window" not in m["cameras"][0] and (out / "counts.png").is_file()


def test_embed_backend_auto_is_onnxruntime_when_installed_else_pytorch(monkeypatch):
    import sys

    from vidreid.runs.track_stages import Embedder

    assert Embedder(backend="pytorch").resolved_backend() == "pytorch"
    assert Embedder(backend="auto", device="cuda").resolved_backend() == "pytorch"
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert Embedder(backend="auto").resolved_backend() == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as on an install without the export extra
    assert Embedder(backend="auto").resolved_backend() == "pytorch"


def test_associator_fuses_colour_histograms_with_the_network_distance(tmp_path):
    """color_weight w: the association distance is (1 - w) * network cosine + w * colour-histogram cosine of
    the tracklets' crops; w = 0 is the network alone; a weight outside [0, 1] is refused."""
    import cv2
    import torch

    from vidreid.data.tracklet import Tracklet
    from vidreid.evaluation.baselines import color_histogram_embeddings
    from vidreid.runs.track_stages import Associator
    from vidreid.video.associate import cosine_distances
    from vidreid.video.tracklets import Fragment

    rng = np.random.default_rng(0)
    frags, files = [], []
    for i, colour in enumerate([(40, 180, 40), (40, 175, 40), (200, 60, 60)]):
        folder = tmp_path / f"track_{i:04d}"
        folder.mkdir()
        paths = []
        for k in range(3):
            img = np.clip(np.full((64, 32, 3), colour) + rng.integers(-5, 6, (64, 32, 3)), 0, 255).astype(np.uint8)
            paths.append(folder / f"{k:06d}.jpg")
            cv2.imwrite(str(paths[-1]), img)
        files.append(paths)
        frags.append(Fragment(0, i + 1, np.arange(3) + 10 * i, np.tile([0.0, 0, 10, 20], (3, 1)), folder))
    net = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05]], np.float32)  # the network confuses 0 with 2
    col = color_histogram_embeddings([Tracklet(tuple(p), 0, 0) for p in files], size=(128, 64)).numpy()
    w = 0.7
    got = Associator(color_weight=w).distances(frags, torch.from_numpy(net))
    np.testing.assert_allclose(got, (1 - w) * cosine_distances(net) + w * cosine_distances(col), atol=1e-6)
    assert not np.allclose(got, cosine_distances(net), atol=1e-3)  # the colour term is there
    np.testing.assert_allclose(Associator().distances(frags, torch.from_numpy(net)), cosine_distances(net))
    with pytest.raises(ValueError, match="color_weight"):
        Associator(color_weight=1.5)
