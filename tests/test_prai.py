"""PRAI-1581 parser (both layouts) and the prai_sticc experiment, on generated fixtures."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from vidreid.data.datasets.prai1581 import PRAI1581, parse_prai_name, read_partitions

REPO = Path(__file__).resolve().parents[1]
# (pid, raw camera, serial): 3 training ids, 2 test ids; cameras labelled 3 and 7 (any integers work)
TRAIN = [(10, 3, 0), (10, 7, 1), (12, 3, 0), (15, 7, 0), (15, 7, 1)]
TEST = [(20, 3, 0), (20, 7, 1), (20, 7, 2), (21, 7, 0), (21, 3, 1)]
MARKS = [0, 1, 1, 0, 1]  # 0 = query, 1 = gallery


def name(pid, cam, k):
    return f"{pid:05d}_{cam}_{k:05d}.jpg"


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), (120, 30, 60)).save(path)


def make_official(root: Path, marks=MARKS, as_numpy=False) -> Path:
    for rec in TRAIN + TEST:
        write_image(root / "images" / name(*rec))
    part = {
        "trainval_im_names": [name(*r) for r in TRAIN],
        "test_im_names": [name(*r) for r in TEST],
        "test_marks": np.asarray(marks) if as_numpy else list(marks),
        "trainval_ids2labels": {10: 0, 12: 1, 15: 2},  # other keys of the format are ignored
    }
    with open(root / "partitions.pkl", "wb") as f:
        pickle.dump(part, f)
    return root


def make_market(root: Path) -> Path:
    for rec in TRAIN:
        write_image(root / "bounding_box_train" / name(*rec))
    for rec, m in zip(TEST, MARKS):
        write_image(root / ("query" if m == 0 else "bounding_box_test") / name(*rec))
    return root


def summary(ds):
    return (
        [(t.pid, t.camid, t.frames[0].name) for t in ds.train],
        [(t.pid, t.camid) for t in ds.query],
        [(t.pid, t.camid) for t in ds.gallery],
    )


EXPECT_TRAIN = [(0, 0, name(10, 3, 0)), (0, 1, name(10, 7, 1)), (1, 0, name(12, 3, 0)), (2, 1, name(15, 7, 0)),
                (2, 1, name(15, 7, 1))]
EXPECT_QUERY = [(20, 0), (21, 1)]
EXPECT_GALLERY = [(20, 1), (20, 1), (21, 0)]


@pytest.mark.parametrize("as_numpy", [False, True])
def test_official_layout(tmp_path, as_numpy):
    root = make_official(tmp_path / "PRAI-1581", as_numpy=as_numpy)
    ds = PRAI1581(root)
    assert ds.extra["layout"] == "official" and ds.extra["raw_cameras"] == [3, 7]
    train, query, gallery = summary(ds)
    assert train == EXPECT_TRAIN and query == EXPECT_QUERY and gallery == EXPECT_GALLERY
    assert ds.num_train_pids == 3 and all(len(t) == 1 and t.frame_ids is None for t in ds.train)
    assert ds.train[0].frames[0] == root / "images" / name(10, 3, 0)


def test_market_layout_gives_the_same_split(tmp_path):
    market = PRAI1581(make_market(tmp_path / "M"))
    official = PRAI1581(make_official(tmp_path / "O"))
    assert market.extra["layout"] == "market"
    m_train, m_query, m_gallery = summary(market)
    o_train, o_query, o_gallery = summary(official)
    assert m_train == o_train and sorted(m_query) == sorted(o_query) and sorted(m_gallery) == sorted(o_gallery)
    assert market.query[0].frames[0].parent.name == "query"


def test_layout_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"missing {tmp_path / 'none'}")):
        PRAI1581(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither partitions.pkl nor bounding_box_train"):
        PRAI1581(tmp_path / "empty")
    root = make_official(tmp_path / "P")
    (root / "images" / name(21, 3, 1)).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 5 test_im_names are not in .*images.*00021_3_00001\.jpg"):
        PRAI1581(root)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "bounding_box_train"))):
        PRAI1581(root, layout="market")
    with pytest.raises(ValueError, match="dataset.layout"):
        PRAI1581(root, layout="video")
    m = make_market(tmp_path / "M")
    (m / "query" / name(20, 3, 0)).unlink()
    (m / "query" / name(21, 7, 0)).unlink()
    with pytest.raises(FileNotFoundError, match=r"query holds no images"):
        PRAI1581(m)


def test_partition_file_errors(tmp_path):
    root = make_official(tmp_path / "A", marks=[0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match=r"test_marks must be 0 \(query\) or 1 \(gallery\), found \[2\]"):
        PRAI1581(root)
    root = make_official(tmp_path / "B", marks=[0, 1, 1, 0])
    with pytest.raises(ValueError, match="test_marks has 4 entries for 5 test_im_names"):
        read_partitions(root / "partitions.pkl")
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump({"trainval_im_names": []}, f)
    with pytest.raises(ValueError, match="expected a dict with keys"):
        read_partitions(tmp_path / "bad.pkl")

    class Evil:  # a pickle that would call os.system on load
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="cannot read the PRAI-1581 partition file"):
        read_partitions(tmp_path / "evil.pkl")


def test_names_and_identity_overlap(tmp_path):
    assert parse_prai_name("00123_1_00042.jpg") == (123, 1)
    with pytest.raises(ValueError, match="<pid>_<cam>"):
        parse_prai_name("img042.jpg")
    root = make_market(tmp_path / "M")
    write_image(root / "bounding_box_test" / name(10, 7, 9))  # a training id in the gallery
    with pytest.raises(ValueError, match="1 identities are in both train and test, e.g. 10"):
        PRAI1581(root)


def test_dataset_config_and_prai_sticc_experiment(tmp_path):
    make_official(tmp_path / "PRAI-1581")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=prai_sticc", f"paths.data_dir={tmp_path}"])
    assert cfg.dataset._target_.endswith("PRAI1581") and cfg.aggregator._target_.endswith("STICC")
    assert cfg.clip.seq_len == 1
    from hydra.utils import instantiate

    ds = instantiate(cfg.dataset)
    assert summary(ds)[1] == EXPECT_QUERY
