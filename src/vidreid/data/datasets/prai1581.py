"""PRAI-1581 (Zhang et al., "Person Re-identification in Aerial Imagery", IEEE TMM 2020): 39,461 person crops of
1,581 identities from two UAVs — STICC's second benchmark (docs/methods.md §4.4). Image-based: every crop is a one-frame
tracklet. Two on-disk layouts are read:

``official`` (the release)::

    root/images/<pid>_<cam>_<...>.jpg
    root/partitions.pkl    # {"trainval_im_names": [...], "test_im_names": [...], "test_marks": [...]}

``test_marks[i]`` is 0 for a query and 1 for a gallery image (the partition format of the open-reid / "triplet loss
baseline" code bases that the release follows; fast-reid's ``PRAI`` loader reads the same keys). Names in the
partition lists are file names inside ``images/``.

``market`` (the common Market-1501-style conversion)::

    root/bounding_box_train/*.jpg   root/bounding_box_test/*.jpg   root/query/*.jpg

with the same ``<pid>_<cam>_<...>.jpg`` names.

In both, the pid is the first ``_``-separated field and the camera (UAV) the second; cameras are numbered
``0..C-1`` in sorted order of the values found (any integer labels work). Training pids are relabelled
``0..N-1``; test pids keep the file's value. There are no frame numbers (``frame_ids`` is ``None``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from vidreid.data.datasets._layout import frame_paths, list_dir
from vidreid.data.tracklet import ReIDDataset, Tracklet, relabel, require_paths

LAYOUTS = ("auto", "official", "market")
OFFICIAL = "root/images/<pid>_<cam>_*.jpg and root/partitions.pkl (trainval_im_names, test_im_names, test_marks)"
MARKET = "root/bounding_box_train/*.jpg, root/bounding_box_test/*.jpg, root/query/*.jpg (names <pid>_<cam>_*.jpg)"
PARTITION_KEYS = ("trainval_im_names", "test_im_names", "test_marks")
_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_prai_name(name: str) -> tuple[int, int]:
    """``(pid, raw camera)`` of a PRAI-1581 crop name: the first two ``_``-separated fields, as integers.

    Example: ``00123_1_00042.jpg`` -> ``(123, 1)``.

    Raises:
        ValueError: a name without two leading integer fields.
    """
    parts = Path(name).stem.split("_")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ValueError(f"PRAI-1581 name {name!r} is not of the form <pid>_<cam>_<...>.jpg") from None


class _PartitionUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only (a partition file has nothing else), so a tampered file
    cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"partition file references {module}.{name}; only lists/dicts/arrays allowed")


def read_partitions(path: Path) -> dict[str, list]:
    """The three partition lists of ``partitions.pkl`` (names as ``str``, marks as ``int``).

    Raises:
        ValueError: not a dict with ``trainval_im_names``, ``test_im_names``, ``test_marks``; marks of another
            length than the test names or not in {0, 1}; a file that cannot be unpickled.
    """
    try:
        with open(path, "rb") as f:
            part = _PartitionUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise ValueError(f"{path}: cannot read the PRAI-1581 partition file ({e})") from e
    if not isinstance(part, dict) or any(k not in part for k in PARTITION_KEYS):
        keys = sorted(part) if isinstance(part, dict) else type(part).__name__
        raise ValueError(f"{path}: expected a dict with keys {list(PARTITION_KEYS)}, got {keys}")
    out = {
        "trainval_im_names": [str(n) for n in part["trainval_im_names"]],
        "test_im_names": [str(n) for n in part["test_im_names"]],
        "test_marks": [int(m) for m in part["test_marks"]],
    }
    if len(out["test_marks"]) != len(out["test_im_names"]):
        raise ValueError(
            f"{path}: test_marks has {len(out['test_marks'])} entries for {len(out['test_im_names'])} test_im_names"
        )
    bad = sorted(set(out["test_marks"]) - {0, 1})
    if bad:
        raise ValueError(f"{path}: test_marks must be 0 (query) or 1 (gallery), found {bad}")
    return out


class PRAI1581(ReIDDataset):
    """PRAI-1581 images as one-frame tracklets (official release: 19,523 trainval crops of 782 ids; the test ids'
    crops split into query and gallery by ``test_marks``).

    Args:
        root: dataset folder (see the module docstring).
        layout: ``auto`` (``partitions.pkl`` present → ``official``, else ``bounding_box_train/`` present →
            ``market``), ``official`` or ``market``.

    Raises:
        ValueError: unknown ``layout``; a partition file or a file name that does not parse; train/test overlap.
        FileNotFoundError: a layout file or folder is missing, or a partition names images that are not in
            ``images/`` (the message names the path, the count and an example, and the expected layout).
    """

    def __init__(self, root: str | Path, layout: str = "auto"):
        root = Path(root)
        if layout not in LAYOUTS:
            raise ValueError(f"dataset.layout={layout!r}: expected one of {LAYOUTS}")
        require_paths([root], f"official: {OFFICIAL}\nmarket:   {MARKET}")
        if layout == "auto":
            if (root / "partitions.pkl").exists():
                layout = "official"
            elif (root / "bounding_box_train").exists():
                layout = "market"
            else:
                raise FileNotFoundError(
                    f"PRAI-1581 at {root}: found neither partitions.pkl nor bounding_box_train/. Expected either\n"
                    f"  official: {OFFICIAL}\n  market:   {MARKET}"
                )
        if layout == "official":
            named = self._official(root)
        else:
            named = self._market(root)
        cams = sorted({parse_prai_name(n)[1] for _, names in named for n in names})
        cam_index = {c: i for i, c in enumerate(cams)}

        def tracklets(folder: Path, names: list[str]) -> list[Tracklet]:
            out = []
            for n, path in zip(names, frame_paths(folder, names)):
                pid, cam = parse_prai_name(n)
                out.append(Tracklet((path,), pid, cam_index[cam]))
            return out

        (train_dir, train_names), (q_dir, q_names), (g_dir, g_names) = named
        train, query, gallery = tracklets(train_dir, train_names), tracklets(q_dir, q_names), tracklets(g_dir, g_names)
        overlap = {t.pid for t in train} & {t.pid for t in query + gallery}
        if overlap:
            raise ValueError(
                f"PRAI-1581 at {root}: {len(overlap)} identities are in both train and test, e.g. {min(overlap)}"
            )
        super().__init__(
            name="prai1581",
            train=relabel(train),
            query=query,
            gallery=gallery,
            extra=dict(root=str(root), layout=layout, raw_cameras=cams, query_in_gallery=False),
        )

    @staticmethod
    def _official(root: Path) -> list[tuple[Path, list[str]]]:
        images, part_file = root / "images", root / "partitions.pkl"
        require_paths([root, images, part_file], OFFICIAL)
        part = read_partitions(part_file)
        present = set(list_dir(images, suffixes=_SUFFIXES))
        for key in ("trainval_im_names", "test_im_names"):
            names = [Path(n).name for n in part[key]]  # tolerate "images/<name>" entries
            missing = [n for n in names if n not in present]
            if missing:
                raise FileNotFoundError(
                    f"{part_file}: {len(missing)} of the {len(names)} {key} are not in {images}, e.g. {missing[0]}. "
                    f"Expected layout:\n{OFFICIAL}"
                )
            part[key] = names
        test = part["test_im_names"]
        query = [n for n, m in zip(test, part["test_marks"]) if m == 0]
        gallery = [n for n, m in zip(test, part["test_marks"]) if m == 1]
        if not query or not gallery:
            raise ValueError(f"{part_file}: test_marks give {len(query)} query and {len(gallery)} gallery images")
        return [(images, part["trainval_im_names"]), (images, query), (images, gallery)]

    @staticmethod
    def _market(root: Path) -> list[tuple[Path, list[str]]]:
        dirs = [root / "bounding_box_train", root / "query", root / "bounding_box_test"]
        require_paths([root, *dirs], MARKET)
        out = []
        for d in dirs:
            names = list_dir(d, suffixes=_SUFFIXES)
            if not names:
                raise FileNotFoundError(f"{d} holds no images ({', '.join(_SUFFIXES)}). Expected layout:\n{MARKET}")
            out.append((d, names))
        return out
