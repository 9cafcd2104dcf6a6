"""The tracklet record and the dataset container every parser returns (docs/architecture.md §3.1)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: the frames of one person seen by one camera.

    Attributes:
        frames: frame image paths in temporal order (at least one).
        pid: person id. Train pids are relabelled to ``0..N-1``; query/gallery keep the dataset's
            own ids (``0`` may mean distractor, as in MARS).
        camid: 0-based camera id.
        frame_ids: optional global frame numbers of ``frames`` (same length), used by the
            spatial-temporal model (st-ReID) and ordering; ``None`` when the layout has none.

    Raises:
        ValueError: if ``frames`` is empty, or ``frame_ids`` has a different length.
    """

    frames: tuple[Path, ...]
    pid: int
    camid: int
    frame_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise ValueError(f"empty tracklet (pid={self.pid}, camid={self.camid}): expected at least one frame")
        if self.frame_ids is not None and len(self.frame_ids) != len(self.frames):
            raise ValueError(
                f"tracklet pid={self.pid} camid={self.camid} starting at {self.frames[0]}: "
                f"{len(self.frame_ids)} frame ids for {len(self.frames)} frames"
            )

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def timestamp(self) -> float | None:
        """Mean global frame number of the tracklet (st-ReID time), or ``None``."""
        if self.frame_ids is None:
            return None
        return sum(self.frame_ids) / len(self.frame_ids)


def relabel(tracklets: Iterable[Tracklet]) -> list[Tracklet]:
    """Relabel pids to ``0..N-1`` in sorted order of the original pid (training sets)."""
    tracklets = list(tracklets)
    mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [Tracklet(t.frames, mapping[t.pid], t.camid, t.frame_ids) for t in tracklets]


def query_in_gallery_applied(declared: bool, override: bool | None = None) -> bool:
    """The one rule deciding whether the evaluation ranks each query against the gallery *and all queries*.

    Used wherever a ranking is scored — testing a checkpoint (the LightningModule's test metric), the
    colour-histogram baseline and scoring a saved ``embeddings.npz`` (which stores its dataset's ``declared``
    value) — so the same dataset and config give the same protocol on every route.

    Args:
        declared: the test dataset's :attr:`ReIDDataset.query_in_gallery` (MARS: true).
        override: ``evaluation.append_query_to_gallery``: ``None`` follows the dataset, a bool forces it.

    Returns:
        ``declared`` when ``override`` is ``None``, else ``override``.
    """
    return bool(declared if override is None else override)


@dataclass
class ReIDDataset:
    """What a dataset parser returns: train / query / gallery tracklet lists, and the evaluation protocol.

    ``train`` pids are ``0..num_train_pids-1``. Parsers subclass this (one file per dataset under
    ``vidreid.data.datasets``) and are built by Hydra ``_target_``.

    Attributes:
        query_in_gallery: the protocol ranks each query against the gallery *and all queries* (MARS,
            docs/methods.md §6.1; a query's own entry is then junk: same pid and camera). Declared here, applied only
            by the metric (``ReIDMetric(append_query_to_gallery=...)``, set by :func:`query_in_gallery_applied`
            from this flag and ``evaluation.append_query_to_gallery``): ``gallery`` never repeats the queries, so
            every tracklet is embedded once. ``embeddings.npz`` stores it, so scoring the file applies it too.
    """

    name: str
    train: list[Tracklet] = field(repr=False)
    query: list[Tracklet] = field(repr=False)
    gallery: list[Tracklet] = field(repr=False)
    extra: dict = field(default_factory=dict, repr=False)
    query_in_gallery: bool = False

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({t.camid for t in self.train})

    def statistics(self) -> list[dict]:
        """Rows ``{subset, ids, tracklets, frames, min_len, mean_len, max_len, cams}`` per subset."""
        rows = []
        for subset, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            lengths = [len(t) for t in items] or [0]
            rows.append(
                dict(
                    subset=subset,
                    ids=len({t.pid for t in items}),
                    tracklets=len(items),
                    frames=sum(lengths),
                    min_len=min(lengths),
                    mean_len=round(sum(lengths) / max(len(items), 1), 1),
                    max_len=max(lengths),
                    cams=len({t.camid for t in items}),
                )
            )
        return rows

    def print_statistics(self) -> None:
        """Print the statistics table with rich."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"dataset: {self.name}")
        rows = self.statistics()
        for col in rows[0]:
            table.add_column(col, justify="left" if col == "subset" else "right")
        for r in rows:
            table.add_row(*[str(v) for v in r.values()])
        Console().print(table)


def require_paths(paths: Sequence[Path | str], layout: str) -> None:
    """Raise ``FileNotFoundError`` naming the first missing path and the expected layout.

    Args:
        paths: files or folders the layout needs.
        layout: a short description of the expected on-disk layout, included in the message.
    """
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"missing {p}. Expected layout:\n{layout}")
