"""On-disk layout helpers shared by the dataset parsers: one directory listing per folder, frame-name
ordering, frame path construction without per-frame filesystem calls, split files and dense chunking.

Nothing here opens or stats an image: a folder is listed once with ``os.scandir`` (whose entry types
come from the directory read itself on common filesystems), and frame paths are built from names.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vidreid.data.tracklet import Tracklet, relabel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``f9.png`` < ``f10.png`` (plain ``sorted`` gives the reverse)."""
    parts = _DIGITS.split(name)
    parts[1::2] = [int(p) for p in parts[1::2]]
    return tuple(parts)


def sort_frame_names(names: Iterable[str]) -> list[str]:
    """Frame names in temporal order.

    When all names have the same length (zero-padded frame counters, the usual case) lexicographic order
    equals numeric order and a plain sort is used; otherwise digit runs are compared by value
    (:func:`natural_key`). This avoids one regex per frame on the large sets (LS-VID: ~3M frames).
    """
    names = list(names)
    if len({len(n) for n in names}) <= 1:
        return sorted(names)
    return sorted(names, key=natural_key)


def list_dir(path: Path, *, dirs: bool = False, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[str]:
    """Names in ``path`` (one ``os.scandir``), sorted lexicographically.

    Args:
        path: folder to list.
        dirs: list sub-folders instead of image files.
        suffixes: lower-case file suffixes kept when ``dirs`` is false (hidden files are always skipped).

    Raises:
        FileNotFoundError: if ``path`` is not a folder.
    """
    if not path.is_dir():
        raise FileNotFoundError(f"expected a folder at {path}")
    out = []
    suffixes = tuple(suffixes)
    with os.scandir(path) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            if dirs:
                if e.is_dir():
                    out.append(e.name)
            elif e.name.lower().endswith(suffixes) and not e.is_dir():
                out.append(e.name)
    out.sort()
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of frame paths.

    Each ``Path`` holds a list, so allocating ~1M of them triggers repeated collections over the growing
    heap (on MARS, 1.19M frames, they took about 40% of the parse time). Reference counting still frees
    memory; the collector is restored (if it was on) on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def frame_paths(folder: Path, names: Iterable[str]) -> tuple[Path, ...]:
    """``folder / name`` for each name, built by ``with_name`` on one template path.

    ``Path.with_name`` skips re-parsing the folder part, which makes it about 1.6x faster than
    ``Path(str)`` per frame on Python 3.11 (it matters for MARS / LS-VID with ~1-3M frames).
    """
    template = folder / "_"
    return tuple(template.with_name(n) for n in names)


def pid_from_name(name: str, what: str) -> int:
    """The integer formed by the last digit run in ``name`` (``person_0073`` -> 73, ``person001`` -> 1).

    Raises:
        ValueError: if ``name`` holds no digits (``what`` names the file it came from).
    """
    digits = _DIGITS.findall(name)
    if not digits:
        raise ValueError(
            f"{what}: cannot read a person id from folder name {name!r} (expected digits, e.g. person_0001)"
        )
    return int(digits[-1])


def chunk_tracklet(t: Tracklet, step: int) -> list[Tracklet]:
    """Cut a training tracklet into consecutive ``step``-frame chunks; the last chunk takes the remainder.

    ``step == 0`` or a tracklet shorter than ``step`` gives the tracklet unchanged. Follows the "dense"
    training split of STAFormer's LS-VID / DukeMTMC-VideoReID loaders (docs/methods.md §0.1), but treats step 0
    as "no chunking" instead of dividing by it.

    Raises:
        ValueError: if ``step`` is negative.
    """
    if step < 0:
        raise ValueError(f"chunk step must be >= 0 (0 = whole tracklets), got {step}")
    n = len(t)
    if step == 0 or n < step:
        return [t]
    num = n // step
    out = []
    for i in range(num):
        lo, hi = i * step, (n if i == num - 1 else (i + 1) * step)
        ids = None if t.frame_ids is None else t.frame_ids[lo:hi]
        out.append(Tracklet(t.frames[lo:hi], t.pid, t.camid, ids))
    return out


def chunk_all(tracklets: Iterable[Tracklet], step: int) -> list[Tracklet]:
    """:func:`chunk_tracklet` over a list, keeping order."""
    return [c for t in tracklets for c in chunk_tracklet(t, step)]


def read_split_file(path: Path, split_id: int, keys: Sequence[str] = ("train", "test")) -> dict[str, list[str]]:
    """Split ``split_id`` of a JSON list of ``{train: [...], test: [...]}`` dicts (PRID-2011 style).

    Raises:
        ValueError: if the file is not such a list, ``split_id`` is out of range, a key is missing,
            or train and test share a name.
    """
    with open(path) as f:
        splits = json.load(f)
    if not isinstance(splits, list) or not splits:
        raise ValueError(f"{path}: expected a non-empty JSON list of {{'train': [...], 'test': [...]}} dicts")
    if not 0 <= split_id < len(splits):
        raise ValueError(f"split_id={split_id} out of range: {path} holds {len(splits)} splits (0..{len(splits) - 1})")
    split = splits[split_id]
    missing = [k for k in keys if k not in split]
    if missing:
        raise ValueError(f"{path}: split {split_id} lacks keys {missing} (has {sorted(split)})")
    overlap = set(split["train"]) & set(split["test"])
    if overlap:
        raise ValueError(
            f"{path}: split {split_id} has {len(overlap)} names in both train and test, e.g. {min(overlap)}"
        )
    return {k: list(split[k]) for k in keys}


def two_camera_split(
    cam_dirs: tuple[Path, Path],
    train_names: Sequence[str],
    test_names: Sequence[str],
    min_frames: int = 0,
) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet]]:
    """Train / query / gallery of a two-camera set with one folder per person and camera (iLIDS-VID, PRID-2011).

    Train = both cameras' tracklets of ``train_names`` (pids relabelled 0..N-1); query = camera 0 tracklets
    of ``test_names``; gallery = camera 1 tracklets of ``test_names``. Test pids are the digits of the
    person folder name. Each person folder is listed once; frames are in natural order (``9.png`` < ``10.png``).

    Args:
        cam_dirs: the two camera folders (camid 0 and 1).
        train_names, test_names: person folder names.
        min_frames: drop tracklets with fewer frames (0 keeps all).

    Raises:
        FileNotFoundError: a person folder is missing in a camera.
        ValueError: a person folder without images or a folder name without digits.
    """

    def read(name: str, camid: int) -> Tracklet | None:
        folder = cam_dirs[camid] / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"missing person folder {folder} (named by the split) in camera folder {cam_dirs[camid]}"
            )
        frames = sort_frame_names(list_dir(folder))
        if not frames:
            raise ValueError(f"person folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(frames) < min_frames:
            return None
        return Tracklet(frame_paths(folder, frames), pid_from_name(name, str(cam_dirs[camid])), camid)

    train = [t for n in sorted(train_names) for c in (0, 1) if (t := read(n, c)) is not None]
    query = [t for n in sorted(test_names) if (t := read(n, 0)) is not None]
    gallery = [t for n in sorted(test_names) if (t := read(n, 1)) is not None]
    return relabel(train), query, gallery


def image_folder_tracklets(folder: Path, parse: Callable[[str], tuple[int, int, int]]) -> tuple[list[Tracklet], int]:
    """One-frame tracklets of an image re-ID folder (Market-1501 / DukeMTMC-reID style), one listing.

    Args:
        folder: a flat folder of ``.jpg`` crops.
        parse: file name -> ``(pid, camid 0-based, global frame)``.

    Returns:
        The tracklets in sorted name order with junk images (pid -1) dropped, and the number dropped.
    """
    out, junk = [], 0
    for name in list_dir(folder, suffixes=(".jpg", ".jpeg", ".png")):
        pid, camid, frame = parse(name)
        if pid == -1:
            junk += 1
            continue
        out.append(Tracklet(frame_paths(folder, [name]), pid, camid, (frame,)))
    return out, junk
