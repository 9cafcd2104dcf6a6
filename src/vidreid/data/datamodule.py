"""LightningDataModule: parses the configured dataset, serves P×K training clips and test tracklets."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Sampler, Subset

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.samplers import PKBatchSampler, RandomBatchSampler
from vidreid.data.tracklet import ReIDDataset
from vidreid.data.transforms import build_transforms
from vidreid.data.val_split import ValidationSplit, split_validation
from vidreid.data.video_dataset import TestTrackletDataset, TrainClipDataset, collate_clips, collate_tracklets
from vidreid.runtime.config import plain
from vidreid.runtime.threads import ENV as THREADS_ENV
from vidreid.runtime.threads import available_cpus, busy_hint, phase_threads, worker_init_threads

log = logging.getLogger(__name__)


class ReIDDataModule(pl.LightningDataModule):
    """Training: P×K identity-balanced clip batches. Validation/test: query + gallery tracklets (one loader,
    ``is_query`` flags) visited in :func:`interleaved_order`, each rank embedding a disjoint shard
    ``order[rank::world_size]``. Validation uses held-out *training* identities
    (:func:`vidreid.data.val_split.split_validation`), never the test split; with ``val_identities=0`` there is
    no validation loader (Lightning then skips validation) and the run reports its final-epoch test.

    Args:
        dataset: the dataset config node (Hydra ``_target_``); instantiated in ``prepare_data`` (rank 0, so
            the synthetic set is generated once) and in ``setup`` (every rank).
        clip: ``ClipSampler`` keyword arguments (the ``clip`` config node).
        sampler: a batch-sampler config chosen by ``_target_`` (``conf/sampler/``: ``PKBatchSampler`` with
            ``num_identities, num_instances, epoch_mode``, or ``RandomBatchSampler`` with ``batch_size``), called
            as ``sampler(train_pids, seed=, num_replicas=, rank=)``.
        transforms: keyword arguments of :func:`vidreid.data.transforms.build_transforms` (``size`` is H, W).
        test_batch_size: tracklets per test batch.
        num_workers: DataLoader workers.
        seed: seeds the sampler stream and the per-item clip/augmentation draws.
        skip_corrupt: replace unreadable frames by their nearest readable neighbour (with a warning)
            instead of failing.
        pin_memory: DataLoader ``pin_memory``.
        max_test_tracklets: optional cap on the test gallery (queries: a quarter of it; debug and smoke runs),
            sampled by identity so that kept queries keep their matches (:func:`cap_test_set`).
        val_identities: training identities held out for validation: a fraction in ``(0, 1)`` or a count;
            ``0``/``None`` = no validation split (``conf/train.yaml`` sets 0.1; the paper and PKU-Reid recipes 0).
        val_queries_per_id: validation queries per held-out identity, from distinct cameras.
        num_threads: torch intra-op threads for training and evaluation; ``None`` = ``$VIDREID_NUM_THREADS``, else
            the CPUs this process may use divided among the node's ranks (:mod:`vidreid.runtime.threads`; never
            the machine's load, so a command gives the same numbers idle or busy).
    """

    def __init__(
        self,
        dataset: DictConfig | dict | ReIDDataset,
        clip: DictConfig | dict,
        sampler: DictConfig | dict,
        transforms: DictConfig | dict,
        test_batch_size: int = 32,
        num_workers: int = 2,
        seed: int = 0,
        skip_corrupt: bool = False,
        pin_memory: bool = False,
        max_test_tracklets: int | None = None,
        val_identities: float | int | None = 0,
        val_queries_per_id: int = 2,
        num_threads: int | None = None,
    ):
        super().__init__()
        # the data settings travel in every checkpoint (``datamodule_hyper_parameters``): evaluate.py and
        # vidreid.embed read the input size, clip length and test preprocessing from there
        clip, sampler, transforms = (plain(x) for x in (clip, sampler, transforms))
        if not isinstance(dataset, ReIDDataset):
            dataset = plain(dataset)
        self.save_hyperparameters(logger=False, ignore=["dataset"] if isinstance(dataset, ReIDDataset) else None)
        self.dataset_cfg = dataset
        if "max_clips_per_forward" in clip:  # moved out of the clip node: one home, in `evaluation`
            raise ValueError(f"clip.max_clips_per_forward={clip['max_clips_per_forward']}: the test-time chunk is "
                             "set as evaluation.max_clips_per_forward (conf/train.yaml); remove it from `clip`")
        self.clip = ClipSampler(**dict(clip))
        self.sampler_cfg = dict(sampler)
        self.transform_cfg = dict(transforms)
        self.size = tuple(self.transform_cfg.get("size", (256, 128)))
        self.test_batch_size = test_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.skip_corrupt = skip_corrupt
        self.pin_memory = pin_memory
        self.max_test_tracklets = max_test_tracklets
        self.val_identities = val_identities
        self.val_queries_per_id = val_queries_per_id
        self.val_split: ValidationSplit | None = None
        self.data: ReIDDataset | None = None
        self._threads_before: int | None = None
        self.num_threads = num_threads  # configured intra-op threads (None: vidreid.runtime.threads policy)
        self.fit_threads: int | None = None  # the training thread count chosen in setup("fit") or resumed
        self.stage_threads: int | None = None  # the count the current stage runs on (recorded in metrics.json)

    def _build_dataset(self) -> ReIDDataset:
        if isinstance(self.dataset_cfg, ReIDDataset):
            return self.dataset_cfg
        try:
            return instantiate(self.dataset_cfg)
        except InstantiationException as e:
            # Hydra wraps the parser's error (and escapes its newlines): surface the original, which names the
            # missing path and the expected layout
            cause = e.__cause__
            if isinstance(cause, (FileNotFoundError, ValueError, FileExistsError)):
                raise cause from None
            raise

    def prepare_data(self) -> None:
        self._build_dataset()

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None and self._threads_before is None:
            # intra-op threads for this stage: data.num_threads, else $VIDREID_NUM_THREADS, else this rank's share of
            # the CPUs the process may use — never the machine's load (vidreid.runtime.threads; restored in
            # teardown). A resumed fit replaces it by the count stored in the checkpoint (load_state_dict), so the
            # run continues with the float summation order it started with.
            self._threads_before = torch.get_num_threads()
            phase = "train" if stage == "fit" else "eval"
            ranks = max(1, int(getattr(self.trainer, "num_devices", 1)))
            n = phase_threads(phase, ranks, configured=self.num_threads)
            torch.set_num_threads(n)
            self.stage_threads = n
            if phase == "train":
                self.fit_threads = n
            why = ("data.num_threads" if self.num_threads is not None else f"${THREADS_ENV}"
                   if os.environ.get(THREADS_ENV) else f"{available_cpus()} CPUs usable / {ranks} rank(s)")
            log.info("torch intra-op threads for %s: %d (%s)", "training" if phase == "train" else "evaluation",
                     n, why)  # fmt: skip
            hint = busy_hint(n, ranks) if self.num_threads is None and not os.environ.get(THREADS_ENV) else None
            if hint:
                log.info(hint)
        if self.data is None:
            data = self._build_dataset()
            split = split_validation(data.train, self.val_identities, self.seed, self.val_queries_per_id)
            if split.val_pids:  # a copy: a ReIDDataset passed in by the caller keeps its full training set
                data = copy.copy(data)
                data.train = split.train
                self.val_split = split
            self.data = data
            # global rank 0 only: before a trainer is attached (run_train sets up the data first), the rank comes
            # from the launcher's environment (torchrun / SLURM start every rank with the whole entry point)
            if self.trainer.is_global_zero if self.trainer is not None else rank_zero_only.rank == 0:
                self.data.print_statistics()
                if self.val_split is not None:
                    s = self.val_split
                    log.info(
                        "validation split (data.val_identities=%s, seed %d): %d training identities held out "
                        "(%d query / %d gallery tracklets), %d identities left for training",
                        self.val_identities, self.seed, len(s.val_pids), len(s.query), len(s.gallery),
                        self.data.num_train_pids,
                    )

    @property
    def num_classes(self) -> int:
        if self.data is None:
            self.setup()
        return self.data.num_train_pids

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the training thread count this run chose (``fit_threads``)."""
        return {"fit_threads": self.fit_threads} if self.fit_threads is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """On resuming a fit: train with the thread count stored in the checkpoint (float results depend on it —
        2 vs 1 threads changed the embedded default's mAP in the 4th decimal after 2 epochs), unless
        ``data.num_threads`` or ``$VIDREID_NUM_THREADS`` pins one."""
        n = state_dict.get("fit_threads")
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        if n is None or not fitting or os.environ.get(THREADS_ENV) or self.num_threads is not None:
            return
        if n != self.fit_threads:
            log.info("resuming with the run's stored %d intra-op training threads (the policy chose %s now)",
                     n, self.fit_threads)  # fmt: skip
        self.fit_threads = self.stage_threads = int(n)
        torch.set_num_threads(self.fit_threads)

    def teardown(self, stage: str | None = None) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def train_dataloader(self) -> DataLoader:
        assert self.data is not None
        rank, world = self._rank_world()
        ds = TrainClipDataset(
            self.data.train, self.clip, build_transforms(train=True, **self.transform_cfg), self.size,
            self.seed, self.skip_corrupt,
        )
        if "_target_" not in self.sampler_cfg:
            raise ValueError(f"sampler config needs a _target_ (a batch sampler class, conf/sampler/), got {self.sampler_cfg}")
        # the configured batch sampler class, called with the training pids (one per tracklet) and the rank layout
        factory = instantiate({**self.sampler_cfg, "_partial_": True})
        bs = factory([t.pid for t in self.data.train], seed=self.seed, num_replicas=world, rank=rank)
        if self.num_workers > 0 and _forks_workers() and getattr(bs, "batch_size", None):
            # reusable shared batch buffers for the forked workers (video_dataset.WorkerBatchSlots): one per batch
            # in flight (DataLoader prefetch 2 per worker), the one being trained on, Lightning's prefetched one
            ds.share_batches_with_workers(bs.batch_size, self.num_workers * 3 + 2)
        return DataLoader(
            ds, batch_sampler=EpochTaggedBatchSampler(bs), num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, worker_init_fn=worker_init_threads,
            collate_fn=collate_clips,
        )

    def _test_loader(self, query: Sequence | None = None, gallery: Sequence | None = None) -> DataLoader:
        assert self.data is not None
        rank, world = self._rank_world()
        if query is None:
            query, gallery = self.data.query, self.data.gallery
        if self.max_test_tracklets:
            query, gallery = cap_test_set(query, gallery, self.max_test_tracklets, self.seed)
        ds = TestTrackletDataset(
            query, gallery, self.clip, self.size,
            self.transform_cfg.get("test_interpolation", "bilinear"), self.skip_corrupt,
        )
        shard: Sequence[int] = interleaved_order(len(query), len(gallery))[rank::world]
        return DataLoader(
            Subset(ds, list(shard)), batch_size=self.test_batch_size, shuffle=False,
            num_workers=self.num_workers, collate_fn=collate_tracklets, worker_init_fn=worker_init_threads,
        )

    def val_dataloader(self) -> DataLoader | list:
        """The held-out training identities' query/gallery loader, or ``[]`` (no validation) when
        ``val_identities`` is 0."""
        if self.val_split is None:
            return []
        return self._test_loader(self.val_split.query, self.val_split.gallery)

    def test_dataloader(self) -> DataLoader:
        return self._test_loader()


def _forks_workers() -> bool:
    """Whether DataLoader workers start by ``fork`` (the set start method, else the platform's default: the first
    of ``get_all_start_methods()``), which shares :class:`~vidreid.data.video_dataset.WorkerBatchSlots` with
    them."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return method == "fork"


def cap_test_set(query: Sequence, gallery: Sequence, max_gallery: int, seed: int = 0) -> tuple[list, list]:
    """At most ``max_gallery`` gallery and ``max(1, max_gallery // 4)`` query tracklets (``data.max_test_tracklets``,
    for debug and smoke runs), chosen by identity so that kept queries keep their true matches.

    Query identities are visited in an order drawn from ``seed``; each one brings its gallery tracklets and (while
    the query budget lasts) its queries, until the next identity's gallery tracklets would not fit. The rest of the
    gallery budget goes to gallery tracklets of other identities (distractors) in dataset order. Both lists keep
    their dataset order. A prefix cut (the first N of each list) could keep queries whose every match lies beyond
    the cut, so that no query counted.

    Args:
        query, gallery: tracklets (anything with ``pid``). max_gallery: gallery cap, >= 1. seed: the draw's seed.

    Returns:
        ``(query, gallery)`` subsets; the inputs unchanged when they already fit.

    Raises:
        ValueError: ``max_gallery < 1``.
    """
    if max_gallery < 1:
        raise ValueError(f"data.max_test_tracklets={max_gallery}: expected a positive count (or null for all)")
    max_query = max(1, max_gallery // 4)
    if len(gallery) <= max_gallery and len(query) <= max_query:
        return list(query), list(gallery)
    by_pid_g: dict[int, list[int]] = {}
    for j, t in enumerate(gallery):
        by_pid_g.setdefault(t.pid, []).append(j)
    by_pid_q: dict[int, list[int]] = {}
    for i, t in enumerate(query):
        by_pid_q.setdefault(t.pid, []).append(i)
    pids = sorted(by_pid_q)
    order = torch.randperm(len(pids), generator=torch.Generator().manual_seed(seed)).tolist()
    keep_q: list[int] = []
    keep_g: list[int] = []
    for k in order:
        pid = pids[k]
        if len(keep_q) >= max_query:
            break
        matches = by_pid_g.get(pid, [])
        # a query counts only with a true match: the same pid from another camera (same camera = junk)
        qs = [i for i in by_pid_q[pid] if any(gallery[j].camid != query[i].camid for j in matches)]
        if not qs or len(keep_g) + len(matches) > max_gallery:
            continue
        keep_g += matches
        keep_q += qs[: max_query - len(keep_q)]
    if not keep_q:  # no identity's gallery fits whole: one identity, its other-camera matches first
        for k in order:
            i = by_pid_q[pids[k]][0]
            matches = sorted(by_pid_g.get(pids[k], []), key=lambda j: gallery[j].camid == query[i].camid)
            if matches and gallery[matches[0]].camid != query[i].camid:
                keep_q, keep_g = [i], matches[:max_gallery]
                break
    chosen = {query[i].pid for i in keep_q}
    others = [j for j, t in enumerate(gallery) if t.pid not in chosen]
    keep_g += others[: max_gallery - len(keep_g)]
    return [query[i] for i in sorted(keep_q)], [gallery[j] for j in sorted(keep_g)]


def interleaved_order(num_query: int, num_gallery: int) -> list[int]:
    """The order in which evaluation items are embedded: dataset indices (queries ``0..num_query-1``, gallery
    ``num_query..``) with queries and gallery mixed in proportion, e.g. ``(2, 4) -> [2, 0, 3, 4, 1, 5]``.

    Any prefix of the batches then holds both queries and gallery items, so a run with ``limit_val_batches`` /
    ``fast_dev_run`` still ranks something; the metric restores dataset order from the indices, so the results do
    not depend on this order.
    """
    keys = [((2 * i + 1) / (2 * num_query), i) for i in range(num_query)]
    keys += [((2 * j + 1) / (2 * num_gallery), num_query + j) for j in range(num_gallery)]
    return [i for _, i in sorted(keys)]


class EpochTaggedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Wraps a batch sampler so that each index travels with its epoch: ``[(index, epoch), ...]``.

    The dataset then draws the clip and augmentation from ``(seed, epoch, index)`` even inside DataLoader
    workers, which were forked before Lightning's ``set_epoch`` reached the sampler.
    """

    def __init__(self, batch_sampler: PKBatchSampler | RandomBatchSampler):
        self.batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def __iter__(self):
        e = self.batch_sampler.epoch
        for batch in self.batch_sampler:
            yield [(i, e) for i in batch]

    def __len__(self) -> int:
        return len(self.batch_sampler)
