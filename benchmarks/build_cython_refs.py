"""Build torchreid's and fast-reid's Cython ranking evaluators into a folder, for ``bench_ranking.py``.

    pip install cython setuptools          # build-time only; not a vidreid dependency
    python benchmarks/build_cython_refs.py \\
        --torchreid /path/to/deep-person-reid/torchreid/metrics/rank_cylib/rank_cy.pyx \\
        --fastreid /path/to/fast-reid/fastreid/evaluation/rank_cylib/rank_cy.pyx --out .cache/cython_refs
    VIDREID_CYTHON_REFS=.cache/cython_refs make bench

The ``.pyx`` files are the projects' own (KaiyangZhou/deep-person-reid, JDAI-CV/fast-reid); nothing of them is
copied into vidreid. Each is compiled with ``-O3`` as module ``torchreid_rank_cy`` / ``fastreid_rank_cy``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SETUP = """
import numpy as np
from setuptools import Extension, setup
from Cython.Build import cythonize
setup(name="{name}", script_args=["build_ext", "--inplace"], ext_modules=cythonize(
    [Extension("{name}", ["{name}.pyx"], include_dirs=[np.get_include()], extra_compile_args=["-O3"])],
    language_level=3))
"""


def build(pyx: Path, name: str, out: Path) -> Path:
    """Compile ``pyx`` as extension module ``name`` into ``out``; returns the built file."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(pyx, Path(tmp) / f"{name}.pyx")
        (Path(tmp) / "setup.py").write_text(SETUP.format(name=name))
        subprocess.run([sys.executable, "setup.py"], cwd=tmp, check=True, capture_output=True)
        built = next(Path(tmp).glob(f"{name}*.so"))
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(built, out / built.name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchreid", type=Path, help="torchreid/metrics/rank_cylib/rank_cy.pyx")
    ap.add_argument("--fastreid", type=Path, help="fastreid/evaluation/rank_cylib/rank_cy.pyx")
    ap.add_argument("--out", type=Path, default=Path(".cache/cython_refs"))
    a = ap.parse_args()
    for pyx, name in ((a.torchreid, "torchreid_rank_cy"), (a.fastreid, "fastreid_rank_cy")):
        if pyx is not None:
            print(f"built {build(pyx, name, a.out)}")


if __name__ == "__main__":
    main()
