"""Small code-health checks: one definition per helper, and library code that leaves process-wide state alone."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

SRC = Path(__file__).resolve().parents[1] / "src" / "vidreid"


def test_no_private_helper_is_defined_in_two_modules():
    """A module-level private function defined in two modules drifts apart (the config-to-plain helper once lived
    in both the datamodule and the LightningModule, one accepting any Mapping, the other only dicts)."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(SRC)))
    assert {k: v for k, v in where.items() if len(v) > 1} == {}


def test_plain_resolves_config_nodes_and_mappings():
    from types import MappingProxyType

    from vidreid.runtime.config import plain

    cfg = OmegaConf.create({"a": 1, "b": "${a}", "c": [1, {"d": "${a}"}]})
    assert plain(cfg) == {"a": 1, "b": 1, "c": [1, {"d": 1}]}
    assert plain(MappingProxyType({"x": cfg.c})) == {"x": [1, {"d": 1}]}
    assert plain(3) == 3 and type(plain(cfg)) is dict


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())


def test_one_opencv_distribution_and_an_spdx_license():
    """`make install` installs one cv2: opencv-python (deep-sort-realtime and trackeval require it), never also the
    -headless build (two distributions writing one cv2 package); the license is the SPDX string (a `{text = ...}`
    table made setuptools print deprecation warnings on every install)."""
    project = _pyproject()
    extras = project["project"]["optional-dependencies"]
    names = [req.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
             for reqs in extras.values() for req in reqs]  # fmt: skip
    assert "opencv-python" in names and not any(n.startswith("opencv-") and n != "opencv-python" for n in names)
    pins = (SRC.parents[1] / "constraints.txt").read_text().lower().split()
    assert [p for p in pins if p.startswith("opencv")] == [p for p in pins if p.startswith("opencv-python==")]
    assert project["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in project["build-system"]["requires"])  # fmt: skip
    cv2 = pytest.importorskip("cv2", reason="the video extra is not installed")
    assert hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "VideoCapture")
