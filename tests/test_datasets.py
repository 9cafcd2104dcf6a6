"""Dataset parsers: tiny fake layouts (zero-byte images) with hand-counted answers, plus the real protocol
files under the shared data folder (skipped when it is absent)."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import h5py
import hydra.utils
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.io import savemat

from vidreid.data.datasets._layout import chunk_tracklet, natural_key, sort_frame_names
from vidreid.data.datasets.duke_video import DukeVideo, parse_frame_name
from vidreid.data.datasets.dukemtmc_reid import DukeMTMCreID
from vidreid.data.datasets.ilidsvid import ILIDSVID
from vidreid.data.datasets.lsvid import LSVID, read_lsvid_protocol
from vidreid.data.datasets.market1501 import Market1501, parse_market_name
from vidreid.data.datasets.mars import MARS
from vidreid.data.datasets.occluded_duke_video import OccludedDukeVideo
from vidreid.data.datasets.prid2011 import PRID2011
from vidreid.data.tracklet import Tracklet

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDREID_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(sub: str) -> Path:
    p = SHARED / sub
    if not p.exists():
        pytest.skip(f"real data {p} absent (set VIDREID_SHARED_DATA to the shared data folder)")
    return p


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).touch()


def names_of(t: Tracklet) -> list[str]:
    return [p.name for p in t.frames]


# ---------------------------------------------------------------- helpers
def test_natural_order_and_chunking():
    assert sorted(["f10.png", "f9.png"]) == ["f10.png", "f9.png"]  # the bug natural order avoids
    assert sorted(["f10.png", "f9.png"], key=natural_key) == ["f9.png", "f10.png"]
    assert sort_frame_names(["a_10.jpg", "a_9.jpg", "a_100.jpg"]) == ["a_9.jpg", "a_10.jpg", "a_100.jpg"]
    t = Tracklet(tuple(Path(f"{i}.jpg") for i in range(7)), 3, 1, tuple(range(100, 107)))
    chunks = chunk_tracklet(t, 3)
    assert [len(c) for c in chunks] == [3, 4]  # last chunk takes the remainder
    assert chunks[1].frame_ids == (103, 104, 105, 106) and {c.pid for c in chunks} == {3}
    assert chunk_tracklet(t, 0) == [t] and chunk_tracklet(t, 8) == [t]


# ---------------------------------------------------------------- MARS
def make_mars(root: Path, query_rows=(3, 5)) -> Path:
    """Train: pid 1 (cam1, 3 frames stored out of order; cam2, 2), pid 5 (cam3, 1). Test: junk, distractor,
    pid 7 cam1 (query) / cam2 (gallery), pid 9 cam4 (query) / cam4 (gallery, same camera)."""
    info = root / "info"
    info.mkdir(parents=True)
    (root / "bbox_train").mkdir()
    (root / "bbox_test").mkdir()
    train = [
        "0001C1T0001F002.jpg",
        "0001C1T0001F001.jpg",
        "0001C1T0001F003.jpg",
        "0001C2T0002F001.jpg",
        "0001C2T0002F002.jpg",
        "0005C3T0001F001.jpg",
    ]
    test = [
        "00-1C1T0001F001.jpg",
        "0000C2T0001F001.jpg",
        "0000C2T0001F002.jpg",
        "0007C1T0001F001.jpg",
        "0007C2T0001F001.jpg",
        "0009C4T0001F001.jpg",
        "0009C4T0002F001.jpg",
    ]
    (info / "train_name.txt").write_text("\r\n".join(train) + "\r\n")
    (info / "test_name.txt").write_text("\n".join(test) + "\n")
    savemat(info / "tracks_train_info.mat", {"track_train_info": np.array([[1, 3, 1, 1], [4, 5, 1, 2], [6, 6, 5, 3]])})
    savemat(
        info / "tracks_test_info.mat",
        {
            "track_test_info": np.array(
                [[1, 1, -1, 1], [2, 3, 0, 2], [4, 4, 7, 1], [5, 5, 7, 2], [6, 6, 9, 4], [7, 7, 9, 4]]
            )
        },
    )
    savemat(info / "query_IDX.mat", {"query_IDX": np.array([query_rows], dtype=np.uint16)})
    return root


def test_mars_fake(tmp_path):
    root = make_mars(tmp_path / "MARS")
    ds = MARS(root)
    assert ds.name == "mars"
    assert [(t.pid, t.camid, len(t)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 2, 1)]
    assert names_of(ds.train[0]) == ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0001C1T0001F003.jpg"]
    assert ds.train[0].frames[0] == root / "bbox_train" / "0001" / "0001C1T0001F001.jpg"
    assert ds.train[0].frame_ids is None
    assert [(t.pid, t.camid) for t in ds.query] == [(7, 0), (9, 3)]
    assert ds.query[0].frames[0] == root / "bbox_test" / "0007" / "0007C1T0001F001.jpg"
    # junk dropped, distractor kept; the queries are NOT repeated in the gallery: the dataset declares the
    # protocol (query_in_gallery) and only the metric applies it, so each tracklet is embedded once
    assert [(t.pid, t.camid) for t in ds.gallery] == [(0, 1), (7, 1), (9, 3)]
    assert ds.query_in_gallery is True
    plain = MARS(root, append_query_to_gallery=False)
    assert len(plain.gallery) == 3 and plain.query_in_gallery is False


def test_mars_errors(tmp_path):
    root = make_mars(tmp_path / "MARS")
    with pytest.raises(FileNotFoundError, match="query_IDX.mat"):
        MARS(root, info_dir=tmp_path / "elsewhere")
    (root / "bbox_test").rmdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "bbox_test"))):
        MARS(root)
    root2 = make_mars(tmp_path / "M2", query_rows=(1,))
    with pytest.raises(ValueError, match="junk"):
        MARS(root2)
    savemat(root2 / "info" / "tracks_train_info.mat", {"track_train_info": np.array([[1, 3, 2, 1]])})
    with pytest.raises(ValueError, match="do not belong together"):
        MARS(root2)


def test_mars_real_protocol(tmp_path):
    info = shared("mars-info")
    (tmp_path / "bbox_train").mkdir()
    (tmp_path / "bbox_test").mkdir()
    ds = MARS(tmp_path, info_dir=info)
    assert (len(ds.train), ds.num_train_pids, sum(len(t) for t in ds.train)) == (8298, 625, 509914)
    assert {t.pid for t in ds.train} == set(range(625))
    assert len(ds.query) == 1980 and len({t.pid for t in ds.query}) == 626
    # the protocol appends the 1980 queries at ranking time (ReIDMetric), not in the parser: 9330 gallery tracklets
    assert len(ds.gallery) == 9330 and ds.query_in_gallery is True
    own = ds.gallery
    assert sum(t.pid == 0 for t in own) == 3248 and len({t.pid for t in own}) == 621
    assert all(t.pid >= 0 for t in ds.gallery)
    assert {t.camid for t in ds.train} == {t.camid for t in ds.gallery} == set(range(6))
    t = ds.train[0]
    assert names_of(t) == sorted(names_of(t)) and t.frames[0].parent == tmp_path / "bbox_train" / "0001"


def test_mars_protocol_is_applied_once_by_the_metric(tmp_path):
    """Each MARS test tracklet is embedded once (11,310 = 1,980 queries + 9,330 gallery; the parser used to append the
    queries to the gallery and the evaluation embedded 13,290), and the metric's append reproduces exactly the
    ranking of the old route (queries duplicated into the gallery)."""
    from vidreid.evaluation.metric import ReIDMetric

    info = shared("mars-info")
    (tmp_path / "bbox_train").mkdir()
    (tmp_path / "bbox_test").mkdir()
    ds = MARS(tmp_path, info_dir=info)
    items = ds.query + ds.gallery
    assert len(items) == 11310
    pids = torch.tensor([t.pid for t in items])
    cams = torch.tensor([t.camid for t in items])
    is_q = torch.arange(len(items)) < len(ds.query)
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(len(pids), 16, generator=gen) + 0.8 * torch.randn(int(pids.max()) + 1, 16, generator=gen)[pids]
    new = ReIDMetric(append_query_to_gallery=ds.query_in_gallery)
    new.update(emb, pids, cams, is_q)
    got = new.compute()
    assert new.last.distmat.shape == (1980, 11310) and len(new.last.embeddings) == 11310
    old = ReIDMetric(append_query_to_gallery=False)  # the old route: queries embedded again as gallery items
    nq = len(ds.query)
    old.update(torch.cat([emb, emb[:nq]]), torch.cat([pids, pids[:nq]]), torch.cat([cams, cams[:nq]]),
               torch.cat([is_q, torch.zeros(nq, dtype=torch.bool)]))  # fmt: skip
    assert got == pytest.approx(old.compute(), abs=1e-9)


# ---------------------------------------------------------------- LS-VID
def write_lsvid_info(path: Path, rows: np.ndarray, query_1based: list[int]) -> None:
    """HDF5 laid out as MATLAB v7.3 writes it: column-major, so the (N, 4) table is stored (4, N), as doubles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["info_test"] = rows.T.astype(np.float64)
        f["query"] = np.array([query_1based], dtype=np.float64)


def make_lsvid(root: Path) -> Path:
    touch(root / "tracklet_train" / "0001", *(f"0001_a_3_001_{i}.jpg" for i in (1, 2, 9, 10, 11)))
    touch(root / "tracklet_train" / "0001", "0001_a_5_002_1.jpg")
    touch(root / "tracklet_train" / "0004", "0004_a_15_001_1.jpg", "0004_a_15_001_2.jpg")
    touch(root / "tracklet_test" / "0008", "0008_a_1_001_1.jpg", "0008_a_2_002_1.jpg", "0008_a_2_002_2.jpg")
    touch(root / "tracklet_test" / "0009", "0009_a_7_001_1.jpg", "0009_a_7_003_1.jpg")
    lists = root / "list_sequence"
    lists.mkdir()
    (lists / "list_seq_train.txt").write_text(
        "tracklet_train/0001/0001_a_3_001_ 1\ntracklet_train/0001/0001_a_5_002_ 1\ntracklet_train/0004/0004_a_15_001_ 4\n"
    )
    (lists / "list_seq_test.txt").write_text(
        "tracklet_test/0008/0008_a_1_001_ 8\ntracklet_test/0008/0008_a_2_002_ 8\n"
        "tracklet_test/0009/0009_a_7_001_ 9\ntracklet_test/0009/0009_a_7_003_ 9\n"
    )
    rows = np.array([[1, 1, 0, 1], [2, 3, 0, 2], [4, 4, 1, 7], [5, 5, 1, 7]])
    write_lsvid_info(root / "test" / "data" / "info_test.mat", rows, [1, 3])
    return root


def test_lsvid_fake(tmp_path):
    root = make_lsvid(tmp_path / "LS-VID")
    ds = LSVID(root)
    assert [(t.pid, t.camid, len(t)) for t in ds.train] == [(0, 2, 5), (0, 4, 1), (1, 14, 2)]
    assert names_of(ds.train[0])[2:] == ["0001_a_3_001_9.jpg", "0001_a_3_001_10.jpg", "0001_a_3_001_11.jpg"]
    assert ds.train[0].frames[0] == root / "tracklet_train" / "0001" / "0001_a_3_001_1.jpg"
    assert [(t.pid, t.camid, len(t)) for t in ds.query] == [(8, 0, 1), (9, 6, 1)]
    assert [(t.pid, t.camid, len(t)) for t in ds.gallery] == [(8, 1, 2), (9, 6, 1)]
    dense = LSVID(root, train_chunk=2)
    assert [(t.pid, len(t)) for t in dense.train] == [(0, 2), (0, 3), (0, 1), (1, 2)]
    assert dense.query == ds.query and dense.gallery == ds.gallery


def test_lsvid_errors(tmp_path):
    root = make_lsvid(tmp_path / "LS-VID")
    write_lsvid_info(root / "test" / "data" / "info_test.mat", np.zeros((3, 4), dtype=int) + 1, [1])
    with pytest.raises(ValueError, match="has 4 tracklets but"):
        LSVID(root)
    (root / "test" / "data" / "info_test.mat").unlink()
    with pytest.raises(FileNotFoundError, match="info_test.mat"):
        LSVID(root)


def test_lsvid_real_protocol():
    p = read_lsvid_protocol(shared("lsvid-info") / "info_test.mat")
    assert p.tracks.shape == (11333, 4) and p.query.shape == (3504,)
    assert np.unique(p.tracks[:, 3]).tolist() == list(range(1, 16))
    assert np.unique(p.tracks[:, 2]).size == 2730 and p.tracks[:, 2].min() == 0
    assert p.query.min() == 2 and len(p.gallery) == 11333 - 3504  # first query is row 3 (1-based)
    assert (p.tracks[:, 1] >= p.tracks[:, 0]).all() and p.tracks[-1, 1] == 2277075
    v = read_lsvid_protocol(shared("lsvid-info") / "info_val.mat")  # v5 file, same variable names
    assert v.tracks.shape == (779, 4) and v.query.shape == (252,) and np.unique(v.tracks[:, 2]).size == 200


# ---------------------------------------------------------------- DukeMTMC-VideoReID
def make_duke_video(root: Path) -> Path:
    touch(
        root / "train" / "0001" / "0003",
        "0001_C6_F9999_X40000.jpg",
        "0001_C6_F10000_X40012.jpg",
        "0001_C6_F0002_X30835.jpg",
        "0001_C6_F0001_X30823.jpg",
    )
    touch(root / "train" / "0001" / "0007", "0001C2F0002X512.jpg", "0001C2F0001X500.jpg")  # older format
    touch(root / "train" / "0042" / "0001", "0042_C8_F0001_X7.jpg")
    (root / "train" / "0042" / "0002").mkdir()  # empty tracklet folder: skipped
    touch(root / "query" / "0005" / "0001", "0005_C1_F0001_X100.jpg")
    touch(root / "gallery" / "0005" / "0002", "0005_C3_F0001_X90.jpg", "0005_C3_F0002_X102.jpg")
    touch(root / "gallery" / "0006" / "0001", "0006_C1_F0001_X5.jpg")
    return root


def test_duke_video_fake(tmp_path):
    root = make_duke_video(tmp_path / "DukeV")
    ds = DukeVideo(root)
    assert [(t.pid, t.camid, len(t)) for t in ds.train] == [(0, 5, 4), (0, 1, 2), (1, 7, 1)]
    # F order is numeric: plain sorting would put F10000 before F9999
    assert names_of(ds.train[0]) == [
        "0001_C6_F0001_X30823.jpg",
        "0001_C6_F0002_X30835.jpg",
        "0001_C6_F9999_X40000.jpg",
        "0001_C6_F10000_X40012.jpg",
    ]
    assert ds.train[0].frame_ids == (30823, 30835, 40000, 40012)
    assert ds.train[1].frame_ids == (500, 512) and ds.train[1].frames[0].parent == root / "train" / "0001" / "0007"
    assert [(t.pid, t.camid) for t in ds.query] == [(5, 0)]
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.gallery] == [(5, 2, (90, 102)), (6, 0, (5,))]
    assert ds.extra["empty_tracklet_folders"] == 1
    chunked = DukeVideo(root, train_chunk=2)
    assert [(t.pid, len(t)) for t in chunked.train] == [(0, 2), (0, 2), (0, 2), (1, 1)]
    occ = OccludedDukeVideo(root)
    assert occ.name == "occluded_duke_video" and occ.train == ds.train


def test_duke_video_names_and_errors(tmp_path):
    assert (
        parse_frame_name("0001_C6_F0099_X30823.jpg") == parse_frame_name("0001C6F0099X30823.jpg") == (1, 6, 99, 30823)
    )
    with pytest.raises(ValueError, match="not of the form"):
        parse_frame_name("0001_6_99.jpg")
    root = make_duke_video(tmp_path / "DukeV")
    touch(root / "query" / "0005" / "0001", "0005_C2_F0002_X101.jpg")
    with pytest.raises(ValueError, match="mixes cameras"):
        DukeVideo(root)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope" / "train"))):
        (tmp_path / "nope").mkdir()
        DukeVideo(tmp_path / "nope")


# ---------------------------------------------------------------- iLIDS-VID
def make_ilids(root: Path) -> Path:
    seq = root / "i-LIDS-VID" / "sequences"
    for i in (4, 1, 19, 2, 3, 7):  # sorted: person001 person002 person003 person004 person007 person019
        for c in (1, 2):
            touch(seq / f"cam{c}" / f"person{i:03d}", *(f"cam{c}_person{i:03d}_{f}.png" for f in (9, 10, 8 + i)))
    splits = root / "train-test people splits"
    splits.mkdir()
    ls_set = np.array([[3, 1, 6, 2, 4, 5], [1, 2, 3, 4, 5, 6]])
    savemat(splits / "train_test_splits_ilidsvid.mat", {"ls_set": ls_set})
    return root


def test_ilidsvid_fake(tmp_path):
    root = make_ilids(tmp_path / "iLIDS-VID")
    ds = ILIDSVID(root, split_id=0)
    # split 0: test = sorted persons #3, #1, #6 -> person003, person001, person019; train = person002/004/007
    assert [t.pid for t in ds.query] == [1, 3, 19] and [t.camid for t in ds.query] == [0, 0, 0]
    assert [t.pid for t in ds.gallery] == [1, 3, 19] and {t.camid for t in ds.gallery} == {1}
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert names_of(ds.query[0]) == ["cam1_person001_9.png", "cam1_person001_10.png"]  # natural, not lexicographic
    assert names_of(ds.query[2]) == ["cam1_person019_9.png", "cam1_person019_10.png", "cam1_person019_27.png"]
    assert ds.query[2].frames[0].parent == root / "i-LIDS-VID" / "sequences" / "cam1" / "person019"
    ds1 = ILIDSVID(root, split_id=1)
    assert [t.pid for t in ds1.query] == [1, 2, 3] and len(ds1.train) == 6
    with pytest.raises(ValueError, match="split_id=2 out of range"):
        ILIDSVID(root, split_id=2)
    (root / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(FileNotFoundError, match="train_test_splits_ilidsvid.mat"):
        ILIDSVID(root)


# ---------------------------------------------------------------- PRID-2011 / PKU-Reid
def make_prid(root: Path) -> Path:
    for cam, persons in (("cam_a", (1, 2, 3, 4, 5)), ("cam_b", (1, 2, 3, 4, 5, 6))):
        for p in persons:
            n = 3 if (cam, p) == ("cam_a", 4) else 12
            touch(root / "multi_shot" / cam / f"person_{p:04d}", *(f"{i:04d}.png" for i in range(1, n + 1)))
    splits = [
        {"train": ["person_0005", "person_0002"], "test": ["person_0004", "person_0001", "person_0003"]},
        {"train": ["person_0001"], "test": ["person_0002"]},
    ]
    (root / "splits_prid2011.json").write_text(json.dumps(splits))
    (root / "other.json").write_text(json.dumps(splits[::-1]))
    return root


def test_prid2011_fake(tmp_path):
    root = make_prid(tmp_path / "prid")
    ds = PRID2011(root)
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(t.pid, t.camid, len(t)) for t in ds.query] == [(1, 0, 12), (3, 0, 12), (4, 0, 3)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(1, 1), (3, 1), (4, 1)]
    assert names_of(ds.query[0])[:3] == ["0001.png", "0002.png", "0003.png"]
    assert ds.query[0].frames[0] == root / "multi_shot" / "cam_a" / "person_0001" / "0001.png"
    assert [t.pid for t in PRID2011(root, min_frames=5).query] == [1, 3]
    other = PRID2011(root, split_file="other.json", name="x")
    assert other.name == "x" and [t.pid for t in other.query] == [2]  # other.json = the splits reversed
    assert [t.pid for t in PRID2011(root, split_id=1).query] == [2]
    with pytest.raises(ValueError, match="split_id=2 out of range"):
        PRID2011(root, split_id=2)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        PRID2011(root, split_file="missing.json")
    (root / "bad.json").write_text(json.dumps([{"train": ["person_0009"], "test": ["person_0001"]}]))
    with pytest.raises(FileNotFoundError, match="person_0009"):
        PRID2011(root, split_file="bad.json")


def test_pku_reid_real_via_config():
    data = shared("pku-reid")
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "pku_reid.yaml")
    cfg = OmegaConf.merge({"paths": {"shared_data": str(data.parent), "data_dir": "/nonexistent"}}, {"d": cfg})
    for split_id in (0, 9):
        ds = hydra.utils.instantiate(cfg.d, split_id=split_id)
        assert ds.name == "pku_reid"
        assert (len(ds.train), ds.num_train_pids, len(ds.query), len(ds.gallery)) == (74, 37, 37, 37)
        assert {len(t) for t in ds.train + ds.query + ds.gallery} == {8}
        assert {t.pid for t in ds.query} == {t.pid for t in ds.gallery}
        split = json.loads((data / "splits_pku_10fold.json").read_text())[split_id]
        assert {t.pid for t in ds.query} == {int(n.split("_")[1]) for n in split["test"]}
        assert not {int(n.split("_")[1]) for n in split["train"]} & {t.pid for t in ds.query}
        assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}


# ---------------------------------------------------------------- Market-1501 / DukeMTMC-reID
def test_market1501_fake(tmp_path):
    root = tmp_path / "Market"
    touch(root / "bounding_box_train", "0002_c1s1_000451_03.jpg", "0009_c4s2_000100_01.jpg", "Thumbs.db")
    touch(root / "query", "0011_c3s3_000010_00.jpg")
    touch(root / "bounding_box_test", "-1_c1s1_000001_00.jpg", "0000_c6s4_000002_01.jpg", "0011_c5s3_000005_02.jpg")
    ds = Market1501(root)
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.train] == [(0, 0, (451,)), (1, 3, (100 + 72107,))]
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.query] == [(11, 2, (10 + 161708 + 161769,))]
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.gallery] == [
        (0, 5, (2 + 87551 + 131268 + 95817,)),
        (11, 4, (5 + 161095 + 161724,)),
    ]  # junk dropped
    assert ds.extra["junk_dropped"] == 1 and all(len(t) == 1 for t in ds.gallery)
    with pytest.raises(ValueError, match="no sequence 4"):
        parse_market_name("0001_c2s4_000001_01.jpg")
    (root / "query" / "0011_c3s3_000010_00.jpg").unlink()
    (root / "query").rmdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "query"))):
        Market1501(root)


def test_market1501_real_sample_timestamps(tmp_path):
    src = shared("market1501-samples")
    # hand-computed from docs/methods.md §5.2: camera 2 sequences 1, 2 have 163,691 and 164,677 frames
    assert parse_market_name("0007_c2s3_070952_01.jpg") == (7, 1, 70952 + 163691 + 164677)
    assert 70952 + 163691 + 164677 == 399320
    root = tmp_path / "Market"
    for sub in ("bounding_box_train", "bounding_box_test", "query"):
        (root / sub).mkdir(parents=True)
    for p in sorted(src.glob("*.jpg")):
        (root / ("bounding_box_train" if p.name.startswith("0007") else "bounding_box_test") / p.name).symlink_to(p)
    for p in (src / "query").glob("*.jpg"):
        (root / "query" / p.name).symlink_to(p)
    ds = Market1501(root)
    assert [(t.pid, t.camid, t.frame_ids[0]) for t in ds.train] == [
        (0, 0, 28546 + 371660),
        (0, 0, 28546 + 371660),
        (0, 1, 399320),
        (0, 1, 399370),
    ]
    assert [(t.pid, t.camid, t.frame_ids[0]) for t in ds.gallery] == [(2, 5, 73426), (2, 5, 73451)]
    assert [(t.pid, t.camid, t.frame_ids[0]) for t in ds.query] == [(2, 5, 73426)]


def test_dukemtmc_reid_fake(tmp_path):
    root = tmp_path / "Duke"
    touch(root / "bounding_box_train", "0005_c2_f0046182.jpg", "0001_c8_f0000010.jpg")
    touch(root / "query", "0010_c1_f0100000.jpg")
    touch(root / "bounding_box_test", "0010_c5_f0000002.jpg")
    ds = DukeMTMCreID(root)
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.train] == [(0, 7, (10,)), (1, 1, (46182,))]
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.query] == [(10, 0, (100000,))]
    assert [(t.pid, t.camid, t.frame_ids) for t in ds.gallery] == [(10, 4, (2,))]
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none"))):
        DukeMTMCreID(tmp_path / "none")


# ---------------------------------------------------------------- configs
CONFIGS = "mars lsvid duke_video occluded_duke_video ilidsvid prid2011 pku_reid market1501 dukemtmc_reid".split()


@pytest.mark.parametrize("name", CONFIGS)
def test_dataset_config_targets(name):
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml")
    cfg = OmegaConf.merge({"paths": {"data_dir": "/data", "shared_data": "/shared"}}, {"d": cfg}).d
    target = hydra.utils.get_class(cfg._target_)
    params = inspect.signature(target.__init__).parameters
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "_target_"}
    assert set(kwargs) <= set(params), f"{name}: unknown keys {set(kwargs) - set(params)}"
    assert kwargs["root"].startswith("/shared/" if name == "pku_reid" else "/data/")
    with pytest.raises(Exception, match=re.escape(f"missing {kwargs['root']}")):  # the missing root is named
        hydra.utils.instantiate(cfg)
