"""Small code-health checks: one definition per helper, and library code that leaves process-wide state alone."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

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
