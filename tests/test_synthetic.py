"""The embedded synthetic dataset (generator, parser, cache atomicity) and the colour-histogram baseline."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import vidreid.data.synthetic as synthetic
from vidreid.data.datasets.synthetic import Synthetic
from vidreid.data.synthetic import SyntheticParams, ensure_synthetic, generate, load_manifest
from vidreid.data.synthetic_people import Painter, draw_person
from vidreid.data.tracklet import Tracklet
from vidreid.evaluation.baselines import color_histogram_embeddings, frame_histograms, grey_world
from vidreid.evaluation.ranking import evaluate_ranking

TINY = dict(seed=0, num_train_ids=3, num_test_ids=4, num_cams=4, num_distractors=2, image_size=(32, 16),
            min_len=8, max_len=12)  # fmt: skip
LAYOUT = dict(seed=3, num_train_ids=5, num_test_ids=8, num_cams=5, num_distractors=4, image_size=(48, 24),
              min_len=8, max_len=64)  # fmt: skip


def _jpgs(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


@pytest.fixture(scope="module")
def layout_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "layout"
    ds = Synthetic(root, **LAYOUT, workers=1)
    return root, load_manifest(root), ds


# --- determinism -----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = ensure_synthetic(tmp_path / "a", SyntheticParams(**TINY), workers=1)
    b = ensure_synthetic(tmp_path / "b", SyntheticParams(**TINY), workers=1)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    files = _jpgs(tmp_path / "a")
    assert files == _jpgs(tmp_path / "b") and len(files) == sum(t["num_frames"] for t in a["tracklets"])
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c = ensure_synthetic(tmp_path / "c", SyntheticParams(**{**TINY, "seed": 1}), workers=1)
    assert c["identities"] != a["identities"] and c["cameras"] != a["cameras"]
    first = lambda m, root: (root / m["tracklets"][0]["dir"] / "F000.jpg").read_bytes()  # noqa: E731
    assert first(a, tmp_path / "a") != first(c, tmp_path / "c")
    assert b == a


def test_output_does_not_depend_on_worker_processes(tmp_path):
    p = SyntheticParams(seed=7, num_train_ids=12, num_test_ids=2, num_cams=4, num_distractors=0,
                        image_size=(32, 16), min_len=8, max_len=8)  # fmt: skip
    m1 = generate(tmp_path / "w1", p, workers=1)
    m2 = generate(tmp_path / "w2", p, workers=2)
    assert len(m1["tracklets"]) >= 40  # large enough for generate() to use the process pool
    assert m1 == m2
    for rel in _jpgs(tmp_path / "w1"):
        assert (tmp_path / "w1" / rel).read_bytes() == (tmp_path / "w2" / rel).read_bytes(), rel


# --- layout, protocol and parser -------------------------------------------------------------------


def test_layout_statistics_and_protocol(layout_set):
    root, m, _ = layout_set
    assert m["format"] == "vidreid-synthetic" and m["params"] == SyntheticParams(**LAYOUT).to_json()
    ts = m["tracklets"]
    assert len(m["cameras"]) == 5 and {t["camid"] for t in ts} == set(range(5))
    for t in ts:
        assert 8 <= t["num_frames"] <= 64
        names = sorted(os.listdir(root / t["dir"]))
        assert names == [f"F{i:03d}.jpg" for i in range(t["num_frames"])], t["dir"]
    with Image.open(root / ts[0]["dir"] / "F000.jpg") as im:
        assert im.mode == "RGB" and im.size == (24, 48)
    cams: dict[int, set[int]] = {}
    for t in ts:
        if t["pid"] > 0:
            cams.setdefault(t["pid"], set()).add(t["camid"])
    assert len(cams) == 5 + 8 and all(len(c) >= 2 for c in cams.values())
    train = {t["pid"] for t in ts if t["subset"] == "train"}
    query = [t for t in ts if t["subset"] == "query"]
    gallery = [t for t in ts if t["subset"] == "gallery"]
    assert not train & {t["pid"] for t in query + gallery}
    assert {t["pid"] for t in query} == set(range(6, 14))  # every test id has a query
    for q in query:  # ...and a true match in the gallery seen by another camera
        assert any(g["pid"] == q["pid"] and g["camid"] != q["camid"] for g in gallery), q["dir"]
    distractors = [t for t in ts if t["pid"] == 0]
    assert len(distractors) == 4 and all(t["subset"] == "gallery" for t in distractors)
    assert 1 <= len({(q["pid"], q["camid"]) for q in query}) == len(query) <= 2 * 8


def test_parser_builds_relabelled_sorted_tracklets(layout_set):
    root, m, ds = layout_set
    assert ds.name == "synthetic"
    assert sorted({t.pid for t in ds.train}) == list(range(5))
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == len(m["tracklets"])
    for t in ds.train + ds.query + ds.gallery:
        assert 0 <= t.camid < 5
        assert [f.name for f in t.frames] == [f"F{i:03d}.jpg" for i in range(len(t))]
        assert t.frame_ids == tuple(range(t.frame_ids[0], t.frame_ids[0] + len(t)))
        assert t.frames[0].parent.parent.parent.name == (
            "train" if t in ds.train else ("query" if t in ds.query else "gallery")
        )
    again = Synthetic(root, **LAYOUT, generate=False)  # read-only access to the same set
    assert again.query == ds.query and again.gallery == ds.gallery and again.train == ds.train


def test_parser_errors(tmp_path, layout_set):
    root = layout_set[0]
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        Synthetic(tmp_path / "missing", generate=False)
    with pytest.raises(ValueError, match="seed"):
        Synthetic(root, **{**LAYOUT, "seed": 4}, generate=False)
    with pytest.raises(ValueError, match="num_cams"):
        SyntheticParams(num_cams=1)
    ident = synthetic.plan_dataset(SyntheticParams(**TINY))[1]["1"]
    with pytest.raises(ValueError, match="view"):
        draw_person(Painter(Image.new("RGB", (16, 32)), 8, 30, 1.0), ident, "top", 20, 0.0)


# --- atomic cache ----------------------------------------------------------------------------------


def test_stale_temp_dir_is_ignored_and_removed(tmp_path):
    stale = tmp_path / ".set.tmp-999-deadbeef"
    (stale / "train" / "0001").mkdir(parents=True)
    (stale / "train" / "0001" / "junk.jpg").write_bytes(b"half written")
    m = ensure_synthetic(tmp_path / "set", SyntheticParams(**TINY), workers=1)
    assert load_manifest(tmp_path / "set") == m
    assert not list(tmp_path.glob(".set.tmp-*"))


def test_killed_generation_leaves_no_half_set(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic._render_job

    def dying(job):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("killed")
        return real(job)

    monkeypatch.setattr(synthetic, "_render_job", dying)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path / "set", SyntheticParams(**TINY), workers=1)
    assert not (tmp_path / "set").exists() and not list(tmp_path.glob(".set.tmp-*"))
    monkeypatch.setattr(synthetic, "_render_job", real)
    ensure_synthetic(tmp_path / "set", SyntheticParams(**TINY), workers=1)
    assert load_manifest(tmp_path / "set")["params"] == SyntheticParams(**TINY).to_json()


def test_reuse_regenerate_and_refuse_foreign_folder(tmp_path, monkeypatch):
    root = tmp_path / "set"
    first = ensure_synthetic(root, SyntheticParams(**TINY), workers=1)
    stamp = (root / "manifest.json").stat().st_mtime_ns

    def no_generate(*args, **kwargs):
        raise AssertionError("regenerated although the cached set matches")

    monkeypatch.setattr(synthetic, "generate", no_generate)
    assert ensure_synthetic(root, SyntheticParams(**TINY)) == first
    assert (root / "manifest.json").stat().st_mtime_ns == stamp
    monkeypatch.undo()
    other = ensure_synthetic(root, SyntheticParams(**{**TINY, "seed": 2}), workers=1)
    assert json.loads((root / "manifest.json").read_text()) == other and other["params"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".set.lock", "set"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        ensure_synthetic(foreign, SyntheticParams(**TINY), workers=1)
    assert (foreign / "notes.txt").read_text() == "keep me"


# --- colour-histogram baseline ---------------------------------------------------------------------


def test_frame_histograms_hand_computed():
    img = np.zeros((2, 4, 2, 3), dtype=np.uint8)
    img[0, :2] = (255, 0, 0)  # frame 0: red top half, blue bottom half
    img[0, 2:] = (0, 0, 255)
    img[1] = (255, 255, 255)  # frame 1: white
    counts = frame_histograms(img, bins=(2, 2, 2), stripes=2)
    expected = np.zeros((2, 8))
    expected[0, 4] = expected[1, 1] = 4  # red = bin (1,0,0) -> 4; blue = (0,0,1) -> 1
    expected[:, 7] = 4  # white = (1,1,1) -> 7
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(ValueError, match="uint8"):
        frame_histograms(img.astype(np.float32))


def test_grey_world_hand_computed():
    img = np.array([[[100, 40, 150], [100, 60, 150]]], dtype=np.uint8)  # channel means 100, 50, 150 -> 100
    np.testing.assert_array_equal(grey_world(img), [[[100, 80, 100], [100, 120, 100]]])


def test_color_histogram_embedding_of_image_files(tmp_path):
    frame = np.zeros((8, 4, 3), dtype=np.uint8)
    frame[:4] = (255, 0, 0)
    frame[4:] = (0, 0, 255)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(frame).save(paths[-1])
    Image.fromarray(np.full((8, 4, 3), 255, np.uint8)).save(tmp_path / "white.png")
    ts = [Tracklet(tuple(paths), 1, 0), Tracklet((tmp_path / "white.png",), 2, 1)]
    emb = color_histogram_embeddings(ts, bins=(2, 2, 2), stripes=2, size=(8, 4), space="rgb", colour_norm="none")
    expected = torch.zeros(2, 16)
    expected[0, 4] = expected[0, 8 + 1] = 2**-0.5
    expected[1, 7] = expected[1, 8 + 7] = 2**-0.5
    torch.testing.assert_close(emb, expected)
    with pytest.raises(ValueError, match="space"):
        color_histogram_embeddings(ts, space="lab")


def test_color_histogram_baseline_beats_chance_on_synthetic(layout_set):
    _, _, ds = layout_set
    q, g = color_histogram_embeddings(ds.query, size=(48, 24)), color_histogram_embeddings(ds.gallery, size=(48, 24))
    assert q.shape == (len(ds.query), 6 * 8 * 4 * 4) and q.dtype == torch.float32
    torch.testing.assert_close(q.norm(dim=1), torch.ones(len(q)))
    stripe_mass = (g.view(len(g), 6, -1) ** 2).sum(-1)  # each stripe is an L1-normalised histogram, sqrt'ed
    torch.testing.assert_close(stripe_mass, torch.full_like(stripe_mass, 1 / 6))
    ids = lambda ts, k: [getattr(t, k) for t in ts]  # noqa: E731
    args = (ids(ds.query, "pid"), ids(ds.gallery, "pid"), ids(ds.query, "camid"), ids(ds.gallery, "camid"))
    hist = evaluate_ranking(1 - q @ g.T, *args)
    gen = torch.Generator().manual_seed(0)
    rand = [evaluate_ranking(torch.rand(len(q), len(g), generator=gen), *args) for _ in range(20)]
    chance_r1, chance_map = np.mean([r.rank(1) for r in rand]), np.mean([r.mAP for r in rand])
    assert hist.num_valid_queries == len(ds.query)
    assert hist.rank(1) > 2 * chance_r1 and hist.mAP > 1.5 * chance_map, (hist.as_dict(), chance_r1, chance_map)
    # the camera colour casts confound raw colours: grey-world normalisation must help
    raw_q = color_histogram_embeddings(ds.query, size=(48, 24), colour_norm="none")
    raw_g = color_histogram_embeddings(ds.gallery, size=(48, 24), colour_norm="none")
    assert evaluate_ranking(1 - raw_q @ raw_g.T, *args).mAP < hist.mAP
