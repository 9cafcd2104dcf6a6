"""ONNX Runtime sessions and the cache folder of exported graphs, shared by the deploy backend
(:mod:`vidreid.deploy.onnxruntime`) and the video detectors that run on onnxruntime
(:mod:`vidreid.video.centernet`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_root", "ort_session"]


def _require_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError('backend="onnxruntime" needs the export extra: pip install -e ".[export]"') from e
    return ort


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where exported graphs are cached: ``cache_dir``, else ``$VIDREID_CACHE_DIR/onnx``, else
    ``~/.cache/vidreid/onnx``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VIDREID_CACHE_DIR")
    return Path(env) / "onnx" if env else Path.home() / ".cache" / "vidreid" / "onnx"


#: sessions kept by (graph path, size, modification time, threads): repeated ``embed`` calls in one process reuse
#: the session (its creation optimises the graph: ~0.2 s for MobileNetV2 int8); a rewritten file gets a new one
_SESSIONS: dict[tuple[str, int, int, int], Any] = {}
_MAX_SESSIONS = 4


def ort_session(path: str | Path, threads: int | None = None, reuse: bool = True):
    """A CPU ``onnxruntime.InferenceSession`` of ``path`` with ``threads`` intra-op threads (default: torch's
    ``get_num_threads()``, the process's thread policy) and one inter-op thread; with ``reuse``, the session of an
    earlier call for the same file (path, size, modification time) and thread count."""
    threads = int(threads or torch.get_num_threads())
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, threads)
    if reuse and key in _SESSIONS:
        return _SESSIONS[key]
    sess = _new_session(path, threads)
    if reuse:
        while len(_SESSIONS) >= _MAX_SESSIONS:
            _SESSIONS.pop(next(iter(_SESSIONS)))
        _SESSIONS[key] = sess
    return sess


def _new_session(path: str | Path, threads: int):
    ort = _require_ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no per-session warnings about unused initialisers
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
