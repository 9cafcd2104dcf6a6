"""Learning from unlabelled video: dataset=track_runs (track.py run folders -> pseudo-identities + cannot-links),
the weights-only init (init_ckpt) and one adaptation step of each objective on real PETS 2009 crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidreid.data.datasets.track_runs import TrackRuns, read_track_run
from vidreid.video.tracklets import camera_folder


def write_run(run: Path, tracks: list[tuple[int, int, list[int]]], crops: dict | None = None,
              identities: list[int] | None = None) -> Path:  # fmt: skip
    """A minimal track.py run folder: ``tracks = [(camid, track_id, frames)]``; crops are random 16x8 images unless
    ``crops[(camid, track_id)]`` gives ``(n, H, W, 3)`` uint8 arrays. tracklets.npz has what track.py writes
    (the association identities ``pids``: ``identities`` or all 0)."""
    rng = np.random.default_rng(0)
    for cam, tid, frames in tracks:
        folder = run / "tracklets" / "multi_shot" / camera_folder(cam) / f"track_{tid:04d}"
        folder.mkdir(parents=True)
        for i, f in enumerate(frames):
            img = crops[(cam, tid)][i] if crops else rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{f:06d}.jpg")
    np.savez(run / "tracklets.npz", embeddings=np.zeros((len(tracks), 4), np.float32),
             pids=np.asarray(identities if identities is not None else np.zeros(len(tracks)), np.int64), camids=np.array([t[0] for t in tracks], np.int64),
             track_ids=np.array([t[1] for t in tracks], np.int64),
             start_frame=np.array([min(t[2]) for t in tracks], np.int64),
             end_frame=np.array([max(t[2]) for t in tracks], np.int64))  # fmt: skip
    return run


def test_pseudo_identities_and_cannot_links(tmp_path: Path):
    """Each raw track is one pseudo-identity (pids 0..N-1); camids are unique across runs; cannot-links are exactly
    the same-camera pairs whose frame spans intersect; tracklets under min_frames are skipped."""
    a = write_run(tmp_path / "a", [(0, 1, [0, 3, 6, 10]), (0, 2, [5, 9, 12, 15]), (0, 3, [20, 25, 28, 30]),
                                   (1, 1, [0, 4, 7, 10]), (0, 9, [40, 41])])  # fmt: skip
    b = write_run(tmp_path / "b", [(0, 4, [0, 2, 5, 8, 10])])
    ds = TrackRuns([a, b], min_frames=4)
    assert [t.pid for t in ds.train] == [0, 1, 2, 3, 4]
    # run a: cam_a tracks 1, 2, 3, cam_b track 1 (camids 0, 1); run b's cam_a -> camid 2; track 9 (2 crops) dropped
    assert [t.camid for t in ds.train] == [0, 0, 0, 1, 2]
    assert [t.frame_ids for t in ds.train][1] == (5, 9, 12, 15)
    expected = np.zeros((5, 5), bool)
    expected[0, 1] = expected[1, 0] = True  # cam_a tracks 1 (0-10) and 2 (5-15) are seen at the same time
    np.testing.assert_array_equal(ds.extra["cannot_link"], expected)
    assert ds.query == [] and ds.gallery == [] and ds.num_train_pids == 5
    assert len(TrackRuns(a, min_frames=1).train) == 5  # a single path; track 9 kept
    assert [len(t["frames"]) for t in read_track_run(b, max_frames=3)] == [3]
    # frame_range [0, 8): crops of frames < 8 only, spans cut; tracks 3 (frames 20-30) and 9 (40-41) gone
    cut = TrackRuns([a], min_frames=2, frame_range=[0, 8])
    assert [t.frame_ids for t in cut.train] == [(0, 3, 6), (0, 4, 7)]  # track 2 keeps 1 crop (< min_frames)
    assert cut.extra["end_frame"].tolist() == [7, 7] and cut.extra["cannot_link"].sum() == 0


def test_association_identities_of_the_runs(tmp_path: Path):
    """extra["identities"]: each tracklet's identity in track.py's association (tracklets.npz pids), numbered apart
    per run; dataset.pids=identity makes them the training pids (0..K-1); a run without pids is a clear error."""
    a = write_run(tmp_path / "a", [(0, 1, [0, 1, 2, 3]), (0, 2, [10, 11, 12, 13]), (0, 3, [4, 5, 6, 7]),
                                   (0, 4, [20, 21, 22, 23])], identities=[5, 2, 5, 7])  # fmt: skip
    b = write_run(tmp_path / "b", [(0, 1, [0, 1, 2, 3]), (0, 2, [4, 5, 6, 7])], identities=[0, 0])
    ds = TrackRuns([a, b])
    # run a in (camid, start) order: tracks 1 (0-3), 3 (4-7), 2 (10-13), 4 (20-23); run b's identities after a's
    assert ds.extra["identities"].tolist() == [5, 5, 2, 7, 8, 8]
    assert [t.pid for t in ds.train] == [0, 1, 2, 3, 4, 5]
    grouped = TrackRuns([a, b], pids="identity")
    assert [t.pid for t in grouped.train] == [1, 1, 0, 2, 3, 3] and grouped.num_train_pids == 4
    np.testing.assert_array_equal(grouped.extra["cannot_link"], ds.extra["cannot_link"])
    np.savez(b / "tracklets.npz", camids=np.zeros(2, np.int64), track_ids=np.array([1, 2]),
             start_frame=np.array([0, 4]), end_frame=np.array([3, 7]))  # fmt: skip
    assert "identities" not in TrackRuns([a, b]).extra
    with pytest.raises(ValueError, match=r"dataset.pids=identity .*missing in \['.*b'\]"):
        TrackRuns([a, b], pids="identity")
    with pytest.raises(ValueError, match="dataset.pids='track'"):
        TrackRuns([a], pids="track")


def test_a_labelled_source_set_is_appended_after_the_runs(tmp_path: Path):
    """dataset.source: the labelled set's training tracklets follow the runs' (pid = index), on cameras after the
    runs', with their labels as identities after the runs' and cannot-links exactly between different labels."""
    from vidreid.data.tracklet import ReIDDataset, Tracklet

    a = write_run(tmp_path / "a", [(0, 1, [0, 1, 2, 3]), (0, 2, [2, 3, 4, 5])], identities=[3, 4])
    frames = tuple(sorted((a / "tracklets" / "multi_shot" / "cam_a" / "track_0001").glob("*.jpg")))
    src = ReIDDataset(name="labelled", train=[Tracklet(frames, 0, 0), Tracklet(frames, 0, 1), Tracklet(frames, 1, 0)],
                      query=[], gallery=[])  # fmt: skip
    ds = TrackRuns([a], source=src)
    assert [t.pid for t in ds.train] == [0, 1, 2, 3, 4] and [t.camid for t in ds.train] == [0, 0, 1, 2, 1]
    assert ds.extra["identities"].tolist() == [3, 4, 5, 5, 6]
    assert ds.extra["is_source"].tolist() == [False, False, True, True, True]
    expected = np.zeros((5, 5), bool)
    expected[0, 1] = expected[1, 0] = True  # the run's co-occurring tracks
    expected[[2, 3, 4, 4], [4, 4, 2, 3]] = True  # source label 0 vs label 1
    np.testing.assert_array_equal(ds.extra["cannot_link"], expected)
    assert [t.pid for t in TrackRuns([a], source=src, pids="identity").train] == [0, 1, 2, 2, 3]


def test_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="track run folder not found: .*nowhere"):
        TrackRuns([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"track run .*empty: missing tracklets\.npz"):
        TrackRuns([tmp_path / "empty"])
    run = write_run(tmp_path / "r", [(0, 1, [0, 1, 2, 3])])
    import shutil

    shutil.rmtree(run / "tracklets" / "multi_shot" / "cam_a" / "track_0001")
    with pytest.raises(FileNotFoundError, match=r"track run .*r: missing the crop folder of tracklet camid=0 "
                                                r"track_id=1: .*track_0001"):  # fmt: skip
        TrackRuns([run])
    np.savez(tmp_path / "empty" / "tracklets.npz", camids=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match=r"lacks \['track_ids', 'start_frame', 'end_frame'\]"):
        TrackRuns([tmp_path / "empty"])
    with pytest.raises(ValueError, match="dataset.runs is empty"):
        TrackRuns([])


def test_pk_batches_from_track_runs(tmp_path: Path):
    """The datamodule serves P×K clips of the pseudo-identities (P tracklets × K clips each)."""
    from vidreid.data.datamodule import ReIDDataModule

    run = write_run(tmp_path / "a", [(0, i, list(range(i, i + 6))) for i in range(5)])
    dm = ReIDDataModule(TrackRuns([run]), clip=dict(seq_len=2), transforms=dict(size=[16, 8]), num_workers=0,
                        sampler=dict(_target_="vidreid.data.samplers.PKBatchSampler", num_identities=4,
                                     num_instances=2, epoch_mode="identities"))  # fmt: skip
    dm.setup("fit")
    clips, pids, camids = next(iter(dm.train_dataloader()))
    assert tuple(clips.shape) == (8, 2, 3, 16, 8)
    assert sorted(torch.bincount(pids).tolist())[-4:] == [2, 2, 2, 2] and set(camids.tolist()) == {0}


# ---------------------------------------------------------------------------------------------- real PETS crops
PETS_FRAMES = 48
PETS_PIECE = 12


def pets_run(shared_data: Path, out: Path) -> Path:
    """A track run of the first 48 frames of PETS 2009 ``vtest.avi``: the boxes of MOT15 PETS09-S2L1's tracks there
    (used only to place the crops; the tracklets carry no label), each cut into tracklets of frames 0-11, 12-23, ...
    (>= 4 boxes) — the pieces of one track co-occur with the other tracks' pieces of the same frames (cannot-links),
    not with each other."""
    import cv2

    from vidreid.video.mot import read_mot

    video = shared_data / "pets2009-vtest" / "vtest.avi"
    gt = shared_data / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"
    if not (video.is_file() and gt.is_file()):
        pytest.skip(f"shared data absent: {video} / {gt}")
    rows = read_mot(gt)
    cap = cv2.VideoCapture(str(video))
    frames = []
    for _ in range(PETS_FRAMES):
        ok, f = cap.read()
        assert ok
        frames.append(f[:, :, ::-1])
    cap.release()
    tracks, crops = [], {}
    for pid in [int(p) for p in np.unique(rows[rows[:, 0] <= PETS_FRAMES, 1])]:
        for piece in range(PETS_FRAMES // PETS_PIECE):
            fr, imgs = [], []
            for f in range(piece * PETS_PIECE, (piece + 1) * PETS_PIECE):
                r = rows[(rows[:, 0] == f + 1) & (rows[:, 1] == pid)]
                if len(r):
                    x, y, w, h = (int(round(v)) for v in r[0, 2:6])
                    crop = frames[f][max(0, y): y + h, max(0, x): x + w]
                    imgs.append(np.ascontiguousarray(cv2.resize(crop, (32, 64), interpolation=cv2.INTER_AREA)))
                    fr.append(f)
            if len(fr) >= 4:
                tid = 10 * pid + piece
                tracks.append((0, tid, fr))
                crops[(0, tid)] = imgs
    assert len(tracks) >= 8
    return write_run(out, tracks, crops)


@pytest.mark.parametrize("method", ["cluster_contrast", "utal"])
def test_one_adaptation_step_lowers_the_loss_on_pets_crops(shared_data, tmp_path: Path, method: str):
    """One Adam step of the video_adapt recipe's network (ImageNet MobileNetV2, here at 128x64) on a batch of real
    PETS crops lowers that batch's adaptation loss, for both objectives."""
    from hydra.utils import instantiate

    from tests.conftest import compose

    run = pets_run(shared_data, tmp_path / "run")
    cfg = compose("train", ["experiment=video_adapt", f"dataset.runs=[{run}]", "data.transforms.size=[128,64]",
                            "sampler.num_identities=4", "sampler.num_instances=2", f"model.adapt.method={method}",
                            "data.transforms.erasing_p=0", "model.adapt.init_frames=4"], output_dir=tmp_path)  # fmt: skip
    torch.manual_seed(0)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert int(np.triu(dm.data.extra["cannot_link"], 1).sum()) >= 10
    module = instantiate(cfg.model, num_classes=dm.num_classes)
    import io

    buf = io.BytesIO()  # the hyper-parameters a checkpoint stores are plain containers (weights_only=True reads them)
    torch.save(dict(module.hparams), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["adapt"]["method"] == method
    module.init_memory(dm)
    module.on_train_epoch_start()
    clips, pids, _ = next(iter(dm.train_dataloader()))
    module.train()
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-4)
    before = module.compute_losses(clips, pids)["loss"]
    before.backward()
    opt.step()
    with torch.no_grad():
        after = module.compute_losses(clips, pids)["loss"]
    assert torch.isfinite(before) and after < before - 1e-3, (float(before), float(after))
    module.on_train_batch_end(None, None, 0)  # memory update from the batch: rows move towards its features
    assert torch.allclose(module.memory.features.norm(dim=1), torch.ones(len(module.memory)), atol=1e-5)


def test_init_ckpt_loads_weights_and_refuses_another_network(tmp_path: Path):
    """init_ckpt: every tensor taken from the checkpoint except a classifier of another size; a different network
    is an error naming the tensors."""
    from hydra.utils import instantiate

    from tests.conftest import compose
    from vidreid.runtime.checkpoint_io import load_init_weights

    cfg = compose("train", ["aggregator.stripes=1"], output_dir=tmp_path)
    a = instantiate(cfg.model, num_classes=5)
    torch.save({"state_dict": {k: v + 1 if v.is_floating_point() else v for k, v in a.state_dict().items()}},
               tmp_path / "a.ckpt")  # fmt: skip
    b = instantiate(cfg.model, num_classes=7)
    fresh = load_init_weights(b, tmp_path / "a.ckpt")
    assert fresh == ["net.heads.0.classifier.weight"]
    for k, v in b.state_dict().items():
        if k not in fresh and v.is_floating_point():
            torch.testing.assert_close(v, a.state_dict()[k] + 1)
    other = instantiate(compose("train", ["aggregator.stripes=2"], output_dir=tmp_path).model, num_classes=5)
    with pytest.raises(ValueError, match="network differs from the configured one"):
        load_init_weights(other, tmp_path / "a.ckpt")


def test_fusion_is_the_weighted_distance():
    """fuse_embeddings: cosine distance of the fused rows = (1 - w) d_net + w d_colour (exact to float precision),
    and reassociate.fused_distances gives the same matrix."""
    from vidreid.evaluation.fusion import fuse_embeddings
    from vidreid.video.associate import cosine_distances
    from vidreid.video.reassociate import fused_distances

    g = torch.Generator().manual_seed(0)
    net, col = torch.randn(6, 5, generator=g), torch.rand(6, 7, generator=g)
    for w in (0.0, 0.3, 1.0):
        fused = cosine_distances(fuse_embeddings(net, col, w))
        want = (1 - w) * cosine_distances(net) + w * cosine_distances(col)
        np.testing.assert_allclose(fused, want, atol=1e-6)
        np.testing.assert_allclose(fused_distances(net.numpy(), col.numpy(), w), want, atol=1e-6)
    with pytest.raises(ValueError, match="color_weight"):
        fuse_embeddings(net, col, 1.5)


def test_track_pseudo_labels_and_frozen_batch_norm(tmp_path: Path):
    """adapt.pseudo_labels=track: cluster contrast's clusters are the run's association identities (renumbered,
    fixed), not a clustering of the memory; adapt.frozen_bn: batch norms use their running statistics in training
    (a clip's features do not depend on its batch, and the statistics do not move)."""
    from hydra.utils import instantiate

    from tests.conftest import compose

    tracks = [(0, i, list(range(10 * i, 10 * i + 6))) for i in range(6)]
    run = write_run(tmp_path / "run", tracks, identities=[4, 9, 4, 2, 9, 7])
    cfg = compose("train", ["experiment=video_adapt", f"dataset.runs=[{run}]", "data.transforms.size=[64,32]",
                            "sampler.num_identities=3", "sampler.num_instances=2", "model.adapt.init_frames=2",
                            "model.adapt.method=cluster_contrast", "model.adapt.pseudo_labels=track",
                            "model.adapt.frozen_bn=true", "model.adapt.threshold=0.5", "data.transforms.erasing_p=0"],
                  output_dir=tmp_path)  # fmt: skip
    torch.manual_seed(0)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.model, num_classes=dm.num_classes)
    module.init_memory(dm)
    module.on_train_epoch_start()
    assert module.labels.tolist() == [1, 3, 1, 0, 3, 2]  # identities 2, 4, 7, 9 -> 0..3, in tracklet order
    assert module.centroids.features.shape[0] == 4
    clips, pids, _ = next(iter(dm.train_dataloader()))
    module.train()
    module.on_train_batch_start((clips, pids, None), 0)
    bn = [m for m in module.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    with torch.no_grad():  # frozen: a clip's features do not depend on the rest of its batch (no batch statistics)
        whole = torch.cat(module.net(clips).bn_features, dim=1)[:2]
        alone = torch.cat(module.net(clips[:2]).bn_features, dim=1)
        torch.testing.assert_close(whole, alone, rtol=1e-4, atol=1e-4)
        assert all(torch.equal(m.running_mean, r) for m, r in zip(bn, before))
        module.net.train()  # batch statistics: other features
        whole = torch.cat(module.net(clips).bn_features, dim=1)[:2]
        alone = torch.cat(module.net(clips[:2]).bn_features, dim=1)
    assert (whole - alone).abs().max() > 1e-2
    np.savez(run / "tracklets.npz", camids=np.zeros(6, np.int64), track_ids=np.arange(6),
             start_frame=np.array([t[2][0] for t in tracks]), end_frame=np.array([t[2][-1] for t in tracks]))  # fmt: skip
    dm = instantiate(cfg.data)
    dm.setup("fit")
    with pytest.raises(ValueError, match="pseudo_labels=track reads the identities"):
        module.init_memory(dm)
