"""W&B dashboards: the pictures (CMC curve, ranked lists) on hand-made cases, an offline run's files and
history, one W&B run per job, and online mode without network or key (falls back to offline, no hang)."""

from __future__ import annotations

import logging
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides
from vidreid.evaluation.visualize import (
    CURVE_RGB,
    MATCH_RGB,
    MISMATCH_RGB,
    RankedRow,
    cmc_curve_figure,
    cmc_curve_image,
    figure_image,
    ranked_gallery,
    ranked_list_figure,
    ranked_list_image,
    select_queries,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


# ------------------------------------------------------------------------------------------ pictures
def test_ranked_gallery_removes_junk_and_sorts_by_distance():
    # gallery: 0 same pid+cam (junk), 1 pid -1 (junk), 2 true match other cam, 3 and 4 other people
    dist = np.array([0.0, 0.05, 0.3, 0.1, 0.3])
    cols, match = ranked_gallery(dist, 7, 0, np.array([7, -1, 7, 2, 3]), np.array([0, 1, 1, 0, 2]), k=10)
    assert cols == [3, 2, 4]  # ties (0.3, 0.3) keep column order
    assert match == [False, True, False]
    assert ranked_gallery(dist, 7, 0, np.array([7, -1, 7, 2, 3]), np.array([0, 1, 1, 0, 2]), k=1) == ([3], [False])


def test_select_queries_skips_queries_without_positives():
    best, worst = select_queries([0.5, np.nan, 1.0, 0.1, 0.5], n=2)
    assert best == [2, 0] and worst == [3, 0]


def test_cmc_curve_is_drawn_where_the_values_are():
    """The matplotlib curve (CURVE_RGB) of a CMC equal to 1 lies at the top of the plot area, of 0 at its bottom."""
    fig = cmc_curve_figure(np.ones(20), size=(480, 320))
    ax = fig.axes[0]
    img = np.asarray(figure_image(fig)).astype(int)
    assert img.shape == (320, 480, 3)
    h = img.shape[0]
    top_px = h - ax.transData.transform((10, 1.0))[1]  # y pixel (from the top) of value 1 at rank 10
    bottom_px = h - ax.transData.transform((10, 0.0))[1]
    col = int(round(ax.transData.transform((10, 0.5))[0]))
    blue = np.flatnonzero(np.abs(img[:, col] - np.array(CURVE_RGB)).sum(-1) < 60)
    assert blue.size and abs(np.median(blue) - top_px) <= 3  # the 2-pt line is half clipped at the axes edge
    low = np.asarray(cmc_curve_image(np.zeros(20), size=(480, 320))).astype(int)
    blue = np.flatnonzero(np.abs(low[:, col] - np.array(CURVE_RGB)).sum(-1) < 60)
    assert blue.size and abs(np.median(blue) - bottom_px) <= 3
    with pytest.raises(ValueError, match="values in"):
        cmc_curve_image([0.5, 1.2])


def test_ranked_list_frames_true_matches_green_and_others_red():
    q = [torch.full((3, 20, 10), 255, dtype=torch.uint8)]
    g = [torch.zeros((3, 20, 10), dtype=torch.uint8) for _ in range(3)]
    fig = ranked_list_figure([RankedRow(q, g, [True, False, True], "q0")], tile=(20, 10), border=3)
    img = np.asarray(figure_image(fig))
    h = img.shape[0]
    query_ax, gallery_axes = fig.axes[0], fig.axes[1:]
    assert len(gallery_axes) == 3
    colours, inside = [], []
    for ax in gallery_axes:  # the frame (spine) colour on the tile's left edge, and the tile's centre
        bb = ax.get_window_extent()
        yc = int(h - (bb.y0 + bb.y1) / 2)
        colours.append(tuple(int(v) for v in img[yc, int(round(bb.x0))]))
        inside.append(tuple(int(v) for v in img[yc, int((bb.x0 + bb.x1) / 2)]))
    assert colours == [MATCH_RGB, MISMATCH_RGB, MATCH_RGB]
    assert inside == [(0, 0, 0)] * 3  # the (black) gallery frames themselves
    bb = query_ax.get_window_extent()
    assert tuple(img[int(h - (bb.y0 + bb.y1) / 2), int((bb.x0 + bb.x1) / 2)]) == (255, 255, 255)
    with pytest.raises(ValueError, match="2 match flags for 3 gallery frames"):
        ranked_list_image([RankedRow(q, g, [True, False], "bad")])


# ------------------------------------------------------------------------------------------ offline run files
def _wandb_records(path: Path):
    """Protobuf records of a ``run-*.wandb`` transaction log (LevelDB log format: 32 KiB blocks of
    ``crc32 u32, length u16, type u8`` chunks; 1 full, 2 first, 3 middle, 4 last) after a 7-byte header."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            pos += block - pos % block if pos % block else 0
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, cache_dir):
    from vidreid.runs.train import run_train

    out = tmp_path_factory.mktemp("wandb_run")
    cfg = compose("train", tiny_overrides(cache_dir, "logger=wandb", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                                          "trainer.log_every_n_steps=1", "++experiment_name=wandb_test"),
                  output_dir=out)  # fmt: skip
    import wandb

    metrics, _ = run_train(cfg)
    assert wandb.run is None, "the run is finished at job end"
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    _wait_for_transaction_log(runs[0])
    return out, runs[0], metrics


def _wait_for_transaction_log(run: Path, timeout_s: float = 60.0) -> None:
    """W&B's service process writes the offline transaction log (``run-*.wandb``) on its own schedule: in two
    full-suite runs the file held no complete record yet when ``run_train`` returned (the run already finished, its
    ``files/`` complete). Wait until the run record is there (the file only grows), else fail with what it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        logs = list(run.glob("run-*.wandb"))
        kinds = {rec.WhichOneof("record_type") for rec in _wandb_records(logs[0])} if logs else set()
        if "run" in kinds and "history" in kinds:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{run}: no run/history record in the transaction log after {timeout_s:.0f} s "
                                 f"(records: {sorted(kinds, key=str)}, files: {sorted(p.name for p in run.iterdir())})")
        time.sleep(0.5)


def test_offline_run_directory_holds_config_history_and_pictures(wandb_run):
    out, run, metrics = wandb_run
    files = run / "files"
    images = {p.parent.name + "/" + p.name.split("_")[0] + "_" + p.name.split("_")[1] for p in
              (files / "media" / "images").rglob("*.png")}  # fmt: skip
    for stage in ("val", "test"):
        for kind in ("cmc_curve", "ranked_best", "ranked_worst"):
            assert any(i.startswith(f"{stage}/{kind}") for i in images), (stage, kind, images)
    assert list((files / "media" / "table" / "dataset").glob("statistics*.table.json"))
    saved_cfg = (files / "config_resolved.yaml").read_text()
    assert "triplet_margin: 0.3" in saved_cfg and "num_train_ids: 8" in saved_cfg

    history, config_keys, group, kinds = {}, set(), None, []
    for rec in _wandb_records(next(run.glob("run-*.wandb"))):
        kind = rec.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "history":
            for item in rec.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(item.value_json)
        elif kind == "config":
            config_keys |= {u.key for u in rec.config.update}
        elif kind == "run":
            group = rec.run.run_group
            config_keys |= {u.key for u in rec.run.config.update}
    assert group == "wandb_test", (group, sorted(set(kinds), key=str), sorted(p.name for p in run.rglob("*"))[:40])
    assert {"data", "model", "optimizer", "loss", "dataset", "trainer", "evaluation", "seed"} <= config_keys
    for key in ("train/ce_step", "train/triplet_step", "train/loss_step", "train/ce_epoch", "lr-Adam/pg1",
                "val/rank1", "val/rank5", "val/rank10", "val/rank20", "val/mAP", "val/mINP",
                "test/rank1", "test/rank5", "test/rank10", "test/rank20", "test/mAP", "test/mINP"):
        assert key in history, key
    assert float(history["test/mAP"][-1]) == pytest.approx(metrics["test/mAP"], abs=1e-6)


def test_each_job_is_its_own_wandb_run_with_a_sync_hint(wandb_run, tmp_path, cache_dir, caplog):
    """A second job in the same process gets its own offline run (the first was finished), and the log
    says how to upload it."""
    from vidreid.runs.train import run_train

    first_out, first_run, _ = wandb_run
    cfg = compose("train", tiny_overrides(cache_dir, "logger=wandb", "trainer.max_epochs=1", "test=false",
                                          "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"),
                  output_dir=tmp_path)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="vidreid"):
        run_train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.split("-")[-1] != first_run.name.split("-")[-1]
    assert any(f"wandb sync {runs[0]}" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ online without network
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("with_key", [True, False])
def test_online_without_network_or_key_falls_back_to_offline_quickly(tmp_path, monkeypatch, caplog, with_key):
    from vidreid.runs.common import build_loggers
    from vidreid.runs.loggers import finish_wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("VIDREID_WANDB_INIT_TIMEOUT", "5")  # wandb's own init_timeout, short for the test
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    if with_key:
        monkeypatch.setenv("WANDB_API_KEY", "f" * 40)
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose("train", ["logger=wandb", "logger.wandb.offline=false"], output_dir=tmp_path)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        loggers = build_loggers(cfg)
        wb = next(lg for lg in loggers if lg.__class__.__name__ == "WandbLogger")
        assert wb._offline
        wb.log_metrics({"x": 1.0}, step=0)  # starts the (offline) run
        finish_wandb(loggers)
    assert time.monotonic() - t0 < 60
    reason = "did not accept the run" if with_key else "no W&B API key"
    assert any(reason in r.getMessage() and "offline" in r.getMessage() for r in caplog.records)
    assert list((tmp_path / "wandb").glob("offline-run-*"))
