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


def write_run(run: Path, tracks: list[tuple[int, int, list[int]]], crops: dict | None = None) -> Path:
    """A minimal track.py run folder: ``tracks = [(camid, track_id, frames)]``; crops are random 16x8 images unless
    ``crops[(camid, track_id)]`` gives ``(n, H, W, 3)`` uint8 arrays. tracklets.npz has what track.py writes
    (the re-ID pids included, which the parser must ignore)."""
    rng = np.random.default_rng(0)
    for cam, tid, frames in tracks:
        folder = run / "tracklets" / "multi_shot" / camera_folder(cam) / f"track_{tid:04d}"
        folder.mkdir(parents=True)
        for i, f in enumerate(frames):
            img = crops[(cam, tid)][i] if crops else rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{f:06d}.jpg")
    np.savez(run / "tracklets.npz", embeddings=np.zeros((len(tracks), 4), np.float32),
             pids=np.zeros(len(tracks), np.int64), camids=np.array([t[0] for t in tracks], np.int64),
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
