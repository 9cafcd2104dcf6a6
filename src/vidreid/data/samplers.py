"""Identity-balanced P×K batch sampling (docs/architecture.md §3.3)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """P identities × K tracklets per batch, for batch-hard triplet mining.

    Epoch modes (docs/methods.md §6.5):
      - ``tracklets`` (STAFormer's RandomIdentitySampler): each identity's tracklets are shuffled and cut into
        groups of K (an identity with fewer than K is upsampled with replacement; an incomplete last group is
        dropped), so every tracklet is visited about once per epoch;
      - ``identities`` (PSTA): one group of K per identity per epoch (with replacement when it has fewer).
    Batches are built by repeatedly drawing P distinct identities that still have a group, so no identity
    appears twice in a batch. The stream is a pure function of ``(seed, epoch)``.

    DDP: batches are dealt round-robin, ``batches[rank::num_replicas]``, after truncating to a multiple of
    ``num_replicas``; each rank therefore receives whole identity groups and equal batch counts.

    Args:
        pids: pid of every training tracklet (index = dataset index).
        num_identities: P. num_instances: K.
        epoch_mode: ``tracklets`` or ``identities``.
        seed: base seed; ``set_epoch(e)`` (called by Lightning) selects the epoch's stream.
        num_replicas, rank: DDP world size and this process's rank.

    Raises:
        ValueError: fewer than P identities, or bad P/K/mode.
    """

    def __init__(
        self,
        pids: Sequence[int],
        num_identities: int = 8,
        num_instances: int = 4,
        epoch_mode: str = "tracklets",
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if epoch_mode not in ("tracklets", "identities"):
            raise ValueError(f"sampler.epoch_mode must be 'tracklets' or 'identities', got {epoch_mode!r}")
        if num_identities < 1 or num_instances < 1:
            raise ValueError(f"P and K must be >= 1, got P={num_identities}, K={num_instances}")
        self.index_by_pid: dict[int, np.ndarray] = {}
        groups = defaultdict(list)
        for i, p in enumerate(pids):
            groups[int(p)].append(i)
        self.index_by_pid = {p: np.asarray(v) for p, v in sorted(groups.items())}
        if len(self.index_by_pid) < num_identities:
            raise ValueError(
                f"P×K sampler needs at least P={num_identities} identities, the training set has "
                f"{len(self.index_by_pid)}; lower sampler.num_identities"
            )
        self.p, self.k = num_identities, num_instances
        self.epoch_mode = epoch_mode
        self.seed = seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def batch_size(self) -> int:
        """P×K: every batch's size."""
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _groups(self, rng: np.random.Generator) -> dict[int, list[np.ndarray]]:
        k = self.k
        out = {}
        for pid, idx in self.index_by_pid.items():
            if self.epoch_mode == "identities":
                out[pid] = [rng.choice(idx, size=k, replace=len(idx) < k)]
                continue
            idx = rng.permutation(idx)
            if len(idx) < k:
                idx = rng.choice(idx, size=k, replace=True)
            out[pid] = [idx[i : i + k] for i in range(0, len(idx) - k + 1, k)]
        return out

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of the epoch across all ranks (before dealing to ranks)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        groups = self._groups(rng)
        avail = [p for p, g in groups.items() if g]
        batches: list[list[int]] = []
        while len(avail) >= self.p:
            chosen = rng.choice(len(avail), size=self.p, replace=False)
            batch: list[int] = []
            for c in chosen:
                batch.extend(int(i) for i in groups[avail[c]].pop())
            batches.append(batch)
            avail = [p for p in avail if groups[p]]
        batches = batches[: len(batches) - len(batches) % self.num_replicas]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self.all_batches()) // self.num_replicas


class RandomBatchSampler(Sampler[list[int]]):
    """Plain shuffled batches (the ``random`` sampler, e.g. PCB's image training), deterministic per
    ``(seed, epoch)``, dealt round-robin across DDP ranks; the last incomplete batch is dropped."""

    def __init__(self, num_samples: int | Sequence[int], batch_size: int, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0):
        """Args: num_samples: the number of training samples, or one pid per sample (the datamodule passes the
        training pids to every batch sampler: ``sampler(pids, seed=, num_replicas=, rank=)``)."""
        if not isinstance(num_samples, int):
            num_samples = len(num_samples)
        if batch_size < 1 or num_samples < batch_size:
            raise ValueError(f"random sampler: batch_size={batch_size} with {num_samples} training samples")
        self.n, self.bs, self.seed = num_samples, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        return self.bs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        nb = len(self) * self.num_replicas
        for b in range(self.rank, nb, self.num_replicas):
            yield perm[b * self.bs : (b + 1) * self.bs].tolist()

    def __len__(self) -> int:
        return (self.n // self.bs) // self.num_replicas
