"""P×K identity sampler: batch composition, epoch modes, determinism, DDP dealing."""

from collections import Counter

import pytest

from vidreid.data.samplers import PKBatchSampler, RandomBatchSampler

# 10 identities with 1..10 tracklets: pid i has i+1 tracklets
PIDS = [p for p in range(10) for _ in range(p + 1)]


def test_batches_have_p_distinct_ids_times_k():
    s = PKBatchSampler(PIDS, num_identities=3, num_instances=2, seed=1)
    batches = list(s)
    assert batches
    for b in batches:
        c = Counter(PIDS[i] for i in b)
        assert len(b) == 6 and len(c) == 3 and set(c.values()) == {2}


def test_tracklets_mode_covers_tracklets_identities_mode_one_group_per_id():
    s = PKBatchSampler(PIDS, num_identities=2, num_instances=2, epoch_mode="tracklets", seed=0)
    # groups per pid: max(1, n // 2) → 1,1,1,2,2,3,3,4,4,5 = 26 groups; batches of 2 distinct ids
    n_groups = sum(max(1, (p + 1) // 2) for p in range(10))
    assert n_groups == 26
    used = sum(len(b) for b in s) // 2
    assert 20 <= used <= 26  # the last groups of the largest identity cannot pair with another id
    s2 = PKBatchSampler(PIDS, num_identities=2, num_instances=2, epoch_mode="identities", seed=0)
    assert len(s2) == 5
    assert Counter(PIDS[i] for b in s2 for i in b) == Counter({p: 2 for p in range(10)})


def test_deterministic_per_seed_and_epoch():
    a = PKBatchSampler(PIDS, 2, 2, seed=5)
    b = PKBatchSampler(PIDS, 2, 2, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)


def test_ddp_ranks_get_disjoint_whole_batches():
    full = PKBatchSampler(PIDS, 2, 2, seed=3).all_batches()
    r0 = list(PKBatchSampler(PIDS, 2, 2, seed=3, num_replicas=2, rank=0))
    r1 = list(PKBatchSampler(PIDS, 2, 2, seed=3, num_replicas=2, rank=1))
    assert len(r0) == len(r1) == len(full) // 2
    assert r0 == full[0 : 2 * len(r0) : 2] and r1 == full[1 : 2 * len(r1) : 2]


def test_too_few_identities():
    with pytest.raises(ValueError, match="at least P=20"):
        PKBatchSampler(PIDS, num_identities=20)


def test_random_batch_sampler():
    s = RandomBatchSampler(10, 3, seed=0)
    batches = list(s)
    assert len(batches) == 3 and len({i for b in batches for i in b}) == 9
