"""The deployable model: the exported ONNX graph takes the uint8 clips the network takes (normalisation inside),
the onnxruntime example of docs/deploy.md reproduces ``vidreid.embed`` on a real PKU-Reid tracklet, and
``embed(backend="onnxruntime")`` (fp32 and int8) and ``track.py embed.backend=onnxruntime`` give PyTorch's
embeddings and identities; exports are cached under the checkpoint's hash and never served stale."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import REPO
from tests.tiny import tiny_cache, train_tiny_checkpoint

ort = pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the export extra")
PKU = "pku-reid/multi_shot"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny ResNet-18 run (64x32, T=4), briefly trained."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("deploy_train"), tiny_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, checkpoint) -> Path:
    from vidreid.deploy.onnx_export import export_onnx

    return export_onnx(checkpoint, tmp_path_factory.mktemp("deploy_onnx") / "model_T4_64x32.onnx", 4, (64, 32))["path"]


def _pku(shared_data: Path, cam: str = "cam_a") -> list[Path]:
    return sorted((shared_data / PKU / cam).iterdir())


def doc_example(source: str = "docs/deploy.md") -> str:
    """The onnxruntime code block of ``source`` (docs/deploy.md or README.md), as written there."""
    text = (REPO / source).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "onnxruntime as ort" in b]
    assert len(blocks) == 1, f"{source} must hold one onnxruntime example"
    return blocks[0]


def test_the_readme_ships_the_docs_onnxruntime_example():
    """The README's example is the tested one, character for character."""
    assert doc_example("README.md") == doc_example("docs/deploy.md")


def test_the_graph_takes_uint8_clips_with_a_dynamic_batch(onnx_file, checkpoint):
    """Before: the graph's input was float32 (uint8 clips were rejected: 'Unexpected input data type')."""
    from vidreid.deploy.inference import load_network

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("clips", "tensor(uint8)", [4, 3, 64, 32])
    assert isinstance(inp.shape[0], str) and out.name == "embedding" and out.type == "tensor(float)"
    net = load_network(checkpoint)
    for b in (1, 5):
        x = torch.randint(0, 256, (b, 4, 3, 64, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(b))
        got = sess.run(None, {"clips": x.numpy()})[0]
        with torch.no_grad():
            ref = net(x).numpy()
        assert got.shape == (b, 512) and np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("frames", [8, 6])  # 8: two whole clips; 6: padded by the all_frames rule
def test_the_docs_onnxruntime_example_reproduces_embed_on_a_real_tracklet(onnx_file, checkpoint, shared_data,
                                                                        tmp_path, frames):  # fmt: skip
    """docs/deploy.md's code block, run as written on a PKU-Reid tracklet (real frames, resized to 64x32), gives
    vidreid.embed's embedding: cosine >= 0.9999. Before: float 0-255 pixels gave cosine -0.04."""
    import vidreid

    src = _pku(shared_data)[0]
    folder = tmp_path / src.name
    folder.mkdir()
    for p in sorted(src.iterdir())[:frames]:
        (folder / p.name).symlink_to(p)
    code = doc_example()
    code = re.sub(r'^onnx_path, tracklet_dir = .*$', f"onnx_path, tracklet_dir = {str(onnx_file)!r}, {str(folder)!r}",
                  code, count=1, flags=re.M)  # fmt: skip
    ns: dict = {}
    exec(compile(code, "docs/deploy.md", "exec"), ns)
    ref = vidreid.embed(checkpoint, [folder], device="cpu", progress=False)[0]
    got = torch.from_numpy(ns["embedding"])
    assert got.shape == ref.shape
    assert float(F.cosine_similarity(got, ref, dim=0)) >= 0.9999


def test_embed_onnxruntime_fp32_matches_pytorch_and_is_cached_by_the_checkpoints_hash(checkpoint, shared_data,
                                                                                    tmp_path, monkeypatch):  # fmt: skip
    import vidreid
    from vidreid.deploy import onnx_export

    tracklets = _pku(shared_data)[:4]
    ref = vidreid.embed(checkpoint, tracklets, device="cpu", progress=False)
    got = vidreid.embed(checkpoint, tracklets, backend="onnxruntime", cache_dir=tmp_path, progress=False)
    assert got.shape == ref.shape == (4, 512)
    assert F.cosine_similarity(got, ref).min() >= 0.9999
    (folder,) = tmp_path.iterdir()
    key = json.loads((folder / "T4_64x32_fp32.json").read_text())
    assert folder.name == key["checkpoint_sha256"][:16] and key["seq_len"] == 4 and key["size"] == [64, 32]
    # a second call reuses the cached graph: exporting again would fail here
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: pytest.fail("re-exported a cached graph"))
    again = vidreid.embed(checkpoint, tracklets[:1], backend="onnxruntime", cache_dir=tmp_path, progress=False)
    assert torch.allclose(again, got[:1], atol=1e-5)
    monkeypatch.undo()
    # an edited checkpoint (same path) is exported again, never served the stale graph
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if k.endswith("bn.weight") and v.dim() == 1)
    ckpt["state_dict"][name] = ckpt["state_dict"][name] * 2
    edited = tmp_path / "ck" / "last.ckpt"
    edited.parent.mkdir()
    torch.save(ckpt, edited)
    ref2 = vidreid.embed(edited, tracklets[:2], device="cpu", progress=False)
    got2 = vidreid.embed(edited, tracklets[:2], backend="onnxruntime", cache_dir=tmp_path, progress=False)
    assert len([p for p in tmp_path.iterdir() if p.name != "ck"]) == 2
    assert F.cosine_similarity(got2, ref2).min() >= 0.9999 and not torch.allclose(got2, got[:2], atol=1e-3)


def test_embed_onnxruntime_int8_stays_close_to_pytorch(checkpoint, shared_data, tmp_path):
    """Static int8 calibrated on other PKU-Reid tracklets: each embedding within cosine 0.99 of fp32 PyTorch, and
    the query-gallery ranking of PKU-Reid's 8 first people unchanged at rank 1."""
    import vidreid

    cam_a, cam_b = _pku(shared_data), _pku(shared_data, "cam_b")
    calib = cam_a[20:52]
    ref = vidreid.embed(checkpoint, cam_a[:8] + cam_b[:8], device="cpu", progress=False)
    got = vidreid.embed(checkpoint, cam_a[:8] + cam_b[:8], backend="onnxruntime", precision="int8",
                        calibration=calib, calibration_clips=32, cache_dir=tmp_path, progress=False)  # fmt: skip
    assert F.cosine_similarity(got, ref).min() >= 0.99
    int8 = list((next(tmp_path.iterdir())).glob("*_int8_*.onnx"))
    assert len(int8) == 1
    sess = ort.InferenceSession(str(int8[0]), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(uint8)"

    def rank1(e):
        e = F.normalize(e, dim=1)
        return (e[:8] @ e[8:].T).argmax(1)

    assert torch.equal(rank1(got), rank1(ref))


def test_embed_rejects_an_unknown_backend_or_precision(checkpoint):
    import vidreid

    with pytest.raises(ValueError, match="backend='tensorrt'"):
        vidreid.embed(checkpoint, [], backend="tensorrt")
    with pytest.raises(ValueError, match="precision='int8'"):
        vidreid.embed(checkpoint, [], precision="int8")  # int8 is an onnxruntime precision


def test_export_prints_no_exporter_progress(checkpoint, tmp_path, caplog, capsys):
    """Before: ~13 INFO lines of onnxscript / onnx_ir passes and '[torch.onnx] ...' progress on every export."""
    from vidreid.deploy.onnx_export import export_onnx

    caplog.set_level(logging.INFO)
    export_onnx(checkpoint, tmp_path / "m.onnx", 4, (64, 32))
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("onnxscript", "onnx_ir", "torch")
             and r.levelno < logging.WARNING]  # fmt: skip
    assert not noisy, [r.getMessage() for r in noisy]
    out = capsys.readouterr()
    assert "[torch.onnx]" not in out.out + out.err


def test_track_py_gives_the_same_identities_with_onnxruntime_on_pets2009(checkpoint, shared_data, tmp_path):
    """track.py on the first 40 frames of PETS2009 (MOT15 ground-truth boxes as detections, so both runs crop the
    same people): the onnxruntime fp32 backend gives PyTorch's identities and embeddings."""
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    gt = shared_data / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"
    if not gt.is_file():
        pytest.skip(f"{gt} not found")
    runs = {}
    for backend in ("pytorch", "onnxruntime"):
        out = tmp_path / backend
        cfg = compose("track", [f"checkpoint={checkpoint}", f"videos={shared_data / 'pets2009-vtest' / 'vtest.avi'}",
                                "detector=mot_file", f"detector.path={gt}", "reader.max_frames=40",
                                "count.window_s=1.0", "render.enabled=false", f"embed.backend={backend}",
                                f"embed.cache_dir={tmp_path / 'cache'}"], output_dir=out)  # fmt: skip
        run_track(cfg)
        ids = json.loads((out / "identities.json").read_text())["identities"]
        runs[backend] = (sorted(sorted(map(str, i["tracklets"])) for i in ids), np.load(out / "tracklets.npz"))
    assert len(list((tmp_path / "cache").rglob("*_fp32.onnx"))) == 1  # the onnxruntime run ran the exported graph
    (ids_pt, z_pt), (ids_ort, z_ort) = runs["pytorch"], runs["onnxruntime"]
    assert len(ids_pt) >= 2 and ids_ort == ids_pt
    a, b = torch.from_numpy(z_pt["embeddings"]), torch.from_numpy(z_ort["embeddings"])
    assert a.shape[0] >= 3 and F.cosine_similarity(a, b).min() >= 0.9999


def test_sessions_are_reused_until_the_graph_file_changes(onnx_file, tmp_path):
    import os

    from vidreid.deploy.onnxruntime import ort_session

    copy = tmp_path / "m.onnx"
    copy.write_bytes(onnx_file.read_bytes())
    first = ort_session(copy, 1)
    assert ort_session(copy, 1) is first and ort_session(copy, 2) is not first
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # rewritten: a new session
    assert ort_session(copy, 1) is not first
