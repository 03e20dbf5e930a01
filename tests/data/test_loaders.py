"""Batching through DataLoader: seeded order, resume, several processes, workers."""

import pytest
import torch

from tcsnn.data.loaders import EpochBatchSampler, TensorSplit, epoch_order, make_loader, sample_seed, shard


def batches(n, bs, epoch, *, seed=0, rank=0, world=1, per_sample_seeds=False):
    sampler = EpochBatchSampler(n, bs, seed=seed, rank=rank, world=world, per_sample_seeds=per_sample_seeds)
    sampler.set_epoch(epoch, epoch_order(n, seed, epoch)[0])
    return list(sampler)


def test_order_is_a_seeded_permutation_cut_into_batches():
    got = batches(10, 4, epoch=3, seed=7)
    assert [len(b) for b in got] == [4, 4, 2]
    flat = [i for b in got for i in b]
    assert flat == torch.randperm(10, generator=torch.Generator().manual_seed(7 * 1_000_003 + 3)).tolist()
    assert batches(10, 4, epoch=3, seed=7) == got  # a fresh sampler after a kill: the same batches
    assert batches(10, 4, epoch=4, seed=7) != got and batches(10, 4, epoch=3, seed=8) != got


@pytest.mark.parametrize("n,bs,world", [(10, 4, 2), (11, 5, 3), (9, 8, 4)])
def test_process_slices_make_up_the_global_batch(n, bs, world):
    whole = batches(n, bs, epoch=1)
    parts = [batches(n, bs, epoch=1, rank=r, world=world) for r in range(world)]
    assert all(len(p) == len(whole) for p in parts)  # every process takes the same number of steps
    for k, batch in enumerate(whole):
        got = []
        for r in range(world):
            lo, hi = shard(len(batch), r, world)
            if hi > lo:
                got += parts[r][k]
            else:  # a stand-in image (weight 0 in the engine)
                assert parts[r][k] == batch[:1]
        assert got == batch


def test_per_sample_seeds_depend_on_epoch_and_position_only():
    got = batches(6, 4, epoch=2, seed=5, per_sample_seeds=True)
    order = epoch_order(6, 5, 2)[0].tolist()
    flat = [item for b in got for item in b]
    assert flat == [(order[p], sample_seed(5, 2, p)) for p in range(6)]
    assert len({s for _, s in flat}) == 6
    rank1 = batches(6, 4, epoch=2, seed=5, rank=1, world=2, per_sample_seeds=True)
    assert rank1[0] == flat[2:4]  # the same seeds whichever process loads the image


def test_dataloader_with_workers_gives_the_same_batches():
    x = torch.arange(20.0).reshape(20, 1, 1, 1)
    y = torch.arange(20)
    data = TensorSplit(x, y)
    out = []
    for workers in (0, 2):
        sampler = EpochBatchSampler(20, 6, seed=1)
        sampler.set_epoch(0, epoch_order(20, 1, 0)[0])
        out.append([(bx.flatten().tolist(), by.tolist()) for bx, by in make_loader(data, sampler, num_workers=workers)])
    assert out[0] == out[1]
    assert [bx for bx, _ in out[0]][0] == [float(i) for i in batches(20, 6, 0, seed=1)[0]]
    assert all(bx == [float(v) for v in by] for bx, by in out[0])


def test_bad_sampler_arguments_are_named():
    with pytest.raises(ValueError, match="no images"):
        EpochBatchSampler(0, 4)
    with pytest.raises(ValueError, match="batch_size"):
        EpochBatchSampler(4, 0)
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(4, 2, rank=2, world=2)
    with pytest.raises(ValueError, match="order has shape"):
        EpochBatchSampler(4, 2).set_epoch(0, torch.arange(3))
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(TensorSplit(torch.zeros(4, 1, 1, 1), torch.zeros(4)), EpochBatchSampler(4, 2), num_workers=-1)
