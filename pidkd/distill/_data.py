"""Batches of an in-memory (inputs, labels) pair for :func:`pidkd.distill.fit`.

A ``DataLoader`` over a ``TensorDataset`` indexes one sample at a time and stacks the results on the
host: at batch 64 that is 128 small indexing operations per step, and on a GPU the step then waits
for the host. :class:`TensorBatches` gathers a whole batch with one index operation, on the device
that holds the tensors (inputs already on the GPU never leave it), and pins host batches bound for a
GPU so that their copy is asynchronous. It yields the same batches in the same order as
``DataLoader(TensorDataset(x, y), batch_size, shuffle, generator=gen)`` and draws the same random
numbers from ``gen`` (or, without one, from torch's global generator), so shuffles, checkpoints and
results of earlier versions replay exactly. Tensors given as ``extras`` (e.g. the teacher's cached
outputs, one row per sample) are gathered with the same indices and yielded after the labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["TensorBatches"]


class TensorBatches:
    """Batches of ``(x, y)`` by index gathers; same batches and random draws as a ``DataLoader``.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs and labels, the same number of samples along axis 0, on any device.
    batch_size : int
        Samples per batch; the last batch holds the rest.
    shuffle : bool
        A new random order every pass, drawn from ``generator``.
    generator : torch.Generator or None
        The CPU generator of the shuffles (as the ``DataLoader``'s ``generator``).
    pin : bool, default False
        Pin host batches (page-locked memory), for asynchronous copies to a GPU.
    extras : sequence of torch.Tensor, default ()
        More per-sample tensors (as many rows as ``x``), batched alongside: each batch is then
        ``(x, y, *extras)``.

    Examples
    --------
    >>> x, y = torch.arange(10.0).view(5, 2), torch.arange(5)
    >>> [b.tolist() for _, b in TensorBatches(x, y, 2, shuffle=False, generator=None)]
    [[0, 1], [2, 3], [4]]
    >>> [e.tolist() for _, _, e in TensorBatches(x, y, 3, shuffle=False, generator=None, extras=[-y])]
    [[0, -1, -2], [-3, -4]]
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        pin: bool = False,
        extras: Sequence[torch.Tensor] = (),
    ) -> None:
        self.x, self.y, self.extras = x, y, tuple(extras)
        if any(len(e) != len(y) for e in self.extras):
            raise ValueError(f"TensorBatches: every extra tensor needs {len(y)} rows, one per sample.")
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.pin = pin and x.device.type == "cpu" and torch.cuda.is_available()

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def _take(self, t: torch.Tensor, on: dict, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the pass (in its order) of ``t``; gathered straight into pinned memory
        when pinning (one copy, not two)."""
        idx = on[t.device][start:stop] if on else None
        if not self.pin or t.device.type != "cpu":
            return t[start:stop] if idx is None else t.index_select(0, idx)  # 3-7x faster than t[idx] on a CPU
        out = torch.empty((stop - start, *t.shape[1:]), dtype=t.dtype, pin_memory=True)
        return out.copy_(t[start:stop]) if idx is None else torch.index_select(t, 0, idx, out=out)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n, bs = len(self.y), self.batch_size
        # A DataLoader's iterator draws a base seed for its workers (from the global generator when it
        # has none), and its RandomSampler a permutation per pass and a second one, which it discards, as
        # it runs out of indices: while forming a last, partial batch, else after the last batch.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order, on = None, {}
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
            # One copy of the order per device and pass, asynchronous (pinned): no host sync per step.
            on = {
                d: order if d.type == "cpu" else order.pin_memory().to(d, non_blocking=True)
                for d in {t.device for t in (self.x, self.y, *self.extras)}
            }
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            if order is not None and stop == n and n % bs:
                torch.randperm(n, generator=self.generator)
            yield tuple(self._take(t, on, start, stop) for t in (self.x, self.y, *self.extras))
        if self.shuffle and n % bs == 0:
            torch.randperm(n, generator=self.generator)
