"""TensorBatches: the batches and random draws of a DataLoader over a TensorDataset, by index gathers."""

import pytest
import torch

from pidkd.distill._data import TensorBatches


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_same_batches_and_draws_as_a_dataloader(n, batch_size, shuffle):
    x = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(1))
    y = torch.arange(n) % 3
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=gen_a
    )
    batches = TensorBatches(x, y, batch_size, shuffle, gen_b)
    assert len(batches) == len(loader)
    # fit() takes one batch first (to size the filters), then whole passes
    (xa, ya), (xb, yb) = next(iter(loader)), next(iter(batches))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for _ in range(3):
        got, want = list(batches), list(loader)
        assert len(got) == len(want)
        for (xa, ya), (xb, yb) in zip(want, got):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.dtype == xb.dtype
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_every_sample_once_per_pass():
    y = torch.arange(23)
    batches = TensorBatches(y.float(), y, 5, True, torch.Generator().manual_seed(0))
    first, second = (torch.cat([b for _, b in batches]) for _ in range(2))
    assert torch.equal(first.sort().values, y) and torch.equal(second.sort().values, y)
    assert not torch.equal(first, second)


def test_extras_are_gathered_with_the_same_indices_and_draw_nothing():
    y = torch.arange(23)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    plain = TensorBatches(y.float(), y, 5, True, gen_a)
    extras = [10 * y, torch.stack([y, -y], 1).half()]
    with_extras = TensorBatches(y.float(), y, 5, True, gen_b, extras=extras)
    for _ in range(2):
        for (xa, ya), (xb, yb, e1, e2) in zip(plain, with_extras, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert torch.equal(e1, 10 * yb) and torch.equal(e2, torch.stack([yb, -yb], 1).half())
    assert torch.equal(gen_a.get_state(), gen_b.get_state())
    with pytest.raises(ValueError, match="23 rows"):
        TensorBatches(y.float(), y, 5, True, None, extras=[y[:-1]])


@pytest.mark.gpu
def test_batches_stay_on_the_gpu_and_host_batches_are_pinned():
    x, y = torch.randn(10, 3), torch.arange(10)
    on_gpu = list(TensorBatches(x.cuda(), y.cuda(), 4, True, torch.Generator().manual_seed(0)))
    pinned = list(TensorBatches(x, y, 4, True, torch.Generator().manual_seed(0), pin=True))
    assert all(b.is_cuda and c.is_cuda for b, c in on_gpu)
    assert all(b.is_pinned() and c.is_pinned() for b, c in pinned)
    for (a, b), (c, d) in zip(on_gpu, pinned):
        assert torch.equal(a.cpu(), c) and torch.equal(b.cpu(), d)


def test_evaluation_batches_draw_from_the_global_generator_as_a_dataloader():
    x, y = torch.randn(7, 2), torch.arange(7)
    torch.manual_seed(3)
    list(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3))
    want = torch.get_rng_state()
    torch.manual_seed(3)
    list(TensorBatches(x, y, 3, False, None))
    assert torch.equal(torch.get_rng_state(), want)
