"""Parser of the embedded synthetic video re-ID set (the default dataset; no download needed).

The set is generated on first use into ``root`` (:mod:`vidreid.data.synthetic`), then read back from its
``manifest.json``: one :class:`~vidreid.data.tracklet.Tracklet` per manifest entry, frames
``F000.jpg .. F<n-1>.jpg`` in temporal order, ``frame_ids`` = the tracklet's global frame numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vidreid.data.synthetic import (
    SUBSETS,
    SyntheticParams,
    ensure_synthetic,
    load_manifest,
    manifest_matches,
)
from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel, require_paths

LAYOUT = """root/manifest.json   (written last by vidreid.data.synthetic; lists params and every tracklet)
root/{train,query,gallery}/<pid:04d>/C<cam+1>_T<k:03d>/F<i:03d>.jpg
Create it with Synthetic(root, ..., generate=True) or `python -m vidreid.data.synthetic --root <root>`."""


class Synthetic(ReIDDataset):
    """The synthetic set as a :class:`ReIDDataset`: train pids relabelled to ``0..N-1``, camids 0-based,
    query/gallery keep raw pids (``0`` = distractor).

    Args:
        root: folder of the set (the conf uses ``${paths.cache_dir}/synthetic_v1``).
        seed, num_train_ids, num_test_ids, num_cams, num_distractors, image_size (``(height, width)``),
            min_len, max_len, queries_per_id, lookalike_rate: see :class:`vidreid.data.synthetic.SyntheticParams`.
        generate: make (or remake) the set when ``root`` lacks one with these params; if false, only read.
        workers: generation processes (``None``: up to 2); does not change the output.

    Raises:
        FileNotFoundError: ``generate=False`` and ``root/manifest.json`` or a listed frame is missing.
        ValueError: ``generate=False`` and the set at ``root`` was made with other params (names them).
        FileExistsError: ``root`` is a non-empty folder that is not a synthetic set.
    """

    def __init__(
        self,
        root: str | Path,
        seed: int = 0,
        num_train_ids: int = 80,
        num_test_ids: int = 50,
        num_cams: int = 6,
        num_distractors: int = 30,
        image_size: Sequence[int] = (128, 64),
        min_len: int = 8,
        max_len: int = 64,
        queries_per_id: int = 2,
        lookalike_rate: float = 0.3,
        generate: bool = True,
        workers: int | None = None,
    ) -> None:
        root = Path(root).expanduser()
        params = SyntheticParams(seed, num_train_ids, num_test_ids, num_cams, num_distractors,
                                 tuple(image_size), min_len, max_len, queries_per_id, lookalike_rate)  # fmt: skip
        if generate:
            manifest = ensure_synthetic(root, params, workers)
        else:
            require_paths([root / "manifest.json"], LAYOUT)
            manifest = load_manifest(root)
            if manifest is None:
                raise ValueError(
                    f"{root / 'manifest.json'} is not a vidreid synthetic-set manifest. Expected:\n{LAYOUT}"
                )
            if not manifest_matches(manifest, params):
                have, want = manifest.get("params", {}), params.to_json()
                diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
                raise ValueError(
                    f"synthetic set at {root} does not match the requested params (have, want): {diff}; "
                    f"generator version {manifest.get('generator_version')}. Use generate=True to regenerate."
                )
        subsets: dict[str, list[Tracklet]] = {s: [] for s in SUBSETS}
        for entry in manifest["tracklets"]:
            d, n, start = root / entry["dir"], int(entry["num_frames"]), int(entry["frame_start"])
            frames = tuple(d / f"F{i:03d}.jpg" for i in range(n))
            subsets[entry["subset"]].append(Tracklet(frames, int(entry["pid"]), int(entry["camid"]),
                                                     tuple(range(start, start + n))))  # fmt: skip
        first_last = [p for ts in subsets.values() for t in ts for p in (t.frames[0], t.frames[-1])]
        require_paths(first_last, LAYOUT)
        super().__init__(
            name="synthetic",
            train=relabel(subsets["train"]),
            query=subsets["query"],
            gallery=subsets["gallery"],
            extra={"root": str(root), "params": params.to_json(), "cameras": manifest["cameras"]},
        )
