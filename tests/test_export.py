"""Feature export: `evaluate.py export=true` files (checked against an independent recomputation from the
saved embeddings), the `vidreid.embed` API (same embeddings as the evaluation), ONNX export vs PyTorch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides, train_tiny_checkpoint


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    """A briefly trained checkpoint (its data settings travel inside it: no run folder needed)."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("export_train"), cache_dir)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cache_dir, checkpoint):
    from vidreid.runs.evaluate import run_evaluate

    out = tmp_path_factory.mktemp("export_eval")
    overrides = tiny_overrides(cache_dir, f"ckpt_path={checkpoint}", "export=true", "export_topk=3", "logger=none",
                               "export_onnx=true")  # fmt: skip
    metrics = run_evaluate(compose("evaluate", overrides, output_dir=out))
    return out, metrics


def _data(cache_dir: Path, tmp_path: Path):
    from hydra.utils import instantiate

    return instantiate(compose("train", tiny_overrides(cache_dir), output_dir=tmp_path).dataset)


def test_export_writes_embeddings_with_ids_and_paths(exported, cache_dir, tmp_path):
    out, _ = exported
    z = np.load(out / "embeddings.npz")
    data = _data(cache_dir, tmp_path)
    nq, ng = len(data.query), len(data.gallery)
    assert z["query_embeddings"].shape[0] == nq and z["gallery_embeddings"].shape[0] == ng
    assert z["query_embeddings"].shape[1] == z["gallery_embeddings"].shape[1] == 512  # resnet18 post-BN
    assert z["query_embeddings"].dtype == np.float32 and np.isfinite(z["query_embeddings"]).all()
    assert z["query_pids"].tolist() == [t.pid for t in data.query]
    assert z["gallery_camids"].tolist() == [t.camid for t in data.gallery]
    assert z["gallery_paths"].tolist() == [str(t.frames[0]) for t in data.gallery]
    assert z["query_num_frames"].tolist() == [len(t) for t in data.query]
    assert str(z["distance"]) == "cosine"


def test_ranked_lists_csv_matches_a_recomputation_from_the_embeddings(exported):
    """Recompute cosine distances from embeddings.npz and rank every query (junk removed) with numpy:
    the CSV must list the same top-3 gallery rows, distances and match flags."""
    out, metrics = exported
    z = np.load(out / "embeddings.npz")
    rows = list(csv.DictReader((out / "ranked_lists.csv").open()))
    q, g = torch.from_numpy(z["query_embeddings"]), torch.from_numpy(z["gallery_embeddings"])
    dist = (1 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).T).clamp(0, 2).numpy()
    qp, qc, gp, gc = z["query_pids"], z["query_camids"], z["gallery_pids"], z["gallery_camids"]
    expected, first_hits = [], 0
    for i in range(len(q)):
        keep = np.flatnonzero(~(((gp == qp[i]) & (gc == qc[i])) | (gp == -1)))
        order = keep[np.argsort(dist[i, keep], kind="stable")]
        first_hits += int(gp[order[0]] == qp[i])
        for r, j in enumerate(order[:3], start=1):
            expected.append((i, r, j, int(gp[j] == qp[i])))
    got = [(int(r["query_row"]), int(r["rank"]), int(r["gallery_row"]), int(r["match"])) for r in rows]
    assert {r["gallery_set"] for r in rows} == {"gallery"}  # synthetic: queries are not appended
    assert got == expected
    for r in rows:
        assert float(r["distance"]) == pytest.approx(dist[int(r["query_row"]), int(r["gallery_row"])], abs=1e-5)
    assert first_hits / len(q) == pytest.approx(metrics["test/rank1"], abs=1e-9)  # rank-1 from the CSV


def test_embed_api_reproduces_the_exported_embeddings(exported, checkpoint, cache_dir, tmp_path, capsys):
    import vidreid

    out, _ = exported
    z = np.load(out / "embeddings.npz")
    data = _data(cache_dir, tmp_path)
    emb = vidreid.embed(checkpoint, data.query, device="cpu", batch_size=4, progress=True)
    assert emb.shape == z["query_embeddings"].shape and emb.dtype == torch.float32
    assert torch.allclose(emb, torch.from_numpy(z["query_embeddings"]), atol=1e-5)
    captured = capsys.readouterr()
    assert "Predicting" in captured.out + captured.err  # trainer.predict's progress bar, when asked for
    # a folder of frames and a list of frame paths are tracklets too
    folder_emb = vidreid.embed(checkpoint, [data.query[0].frames[0].parent, list(data.query[1].frames)],
                               device="cpu", progress=False)  # fmt: skip
    assert torch.allclose(folder_emb, emb[:2], atol=1e-5)


def test_embed_without_a_checkpoint_names_the_path(tmp_path):
    import vidreid

    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        vidreid.embed(tmp_path / "nope.ckpt", [], progress=False)


def test_onnx_export_matches_pytorch(exported, checkpoint):
    pytest.importorskip("onnx", reason="ONNX export needs the export extra (pip install -e '.[export]')")
    from vidreid.deploy.onnx_export import export_onnx

    out, _ = exported
    path = out / "model_T4_64x32.onnx"  # written by evaluate.py export_onnx=true
    assert path.is_file() and not path.with_name(path.name + ".data").exists()  # weights inside the file
    res = export_onnx(checkpoint, out / "again.onnx", seq_len=4, size=(64, 32))
    assert res["embedding_dim"] == 512
    if res["checked_with"] != "onnxruntime":
        pytest.skip("onnxruntime not installed: the graph passed onnx.checker, outputs were not compared")
    assert res["max_abs_diff"] <= 1e-4
    import onnxruntime as ort

    from vidreid.deploy.inference import load_network

    x = torch.randint(0, 256, (2, 4, 3, 64, 32), dtype=torch.uint8)  # the graph's input: uint8 pixels
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = load_network(checkpoint)(x)
    assert np.abs(sess.run(None, {"clips": x.numpy()})[0] - ref.numpy()).max() <= 1e-4


def test_embed_refuses_a_size_or_clip_length_other_than_the_checkpoints(checkpoint, cache_dir, tmp_path):
    """One rule for evaluate.py and vidreid.embed: the checkpoint's input size and T win; asking for another is an
    error naming both values (before: embed silently resized to the requested size)."""
    import vidreid
    from vidreid.deploy.inference import SettingsConflict

    data = _data(cache_dir, tmp_path)
    with pytest.raises(SettingsConflict, match=r"size: requested \(128, 64\), the checkpoint was trained with \(64, 32\)"):
        vidreid.embed(checkpoint, data.query[:1], size=(128, 64), device="cpu", progress=False)
    with pytest.raises(SettingsConflict, match=r"seq_len: requested 8, the checkpoint was trained with 4"):
        vidreid.embed(checkpoint, data.query[:1], seq_len=8, device="cpu", progress=False)
    same = vidreid.embed(checkpoint, data.query[:2], size=(64, 32), seq_len=4, device="cpu", progress=False)
    assert torch.allclose(same, vidreid.embed(checkpoint, data.query[:2], device="cpu", progress=False))


def test_checkpoint_holds_the_data_settings_and_one_copy_of_the_weights(checkpoint):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)  # plain containers and tensors only
    dm = ckpt["datamodule_hyper_parameters"]
    assert list(dm["transforms"]["size"]) == [64, 32] and dm["clip"]["seq_len"] == 4
    assert "data_settings" not in ckpt["hyper_parameters"]
    assert all(k.startswith("net.") for k in ckpt["state_dict"]), sorted({k.split(".")[0] for k in ckpt["state_dict"]})
