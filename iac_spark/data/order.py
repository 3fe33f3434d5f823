"""The order of an epoch: which sample comes when, reproducibly, and where a resumed run starts.

An epoch visits every sample once. Unshuffled, the order is the query's row order. Shuffled,
it is a permutation drawn from ``random.Random`` seeded with the text ``"iac_spark:<seed>:<epoch>"``
(string seeds are hashed with SHA-512, so the order is the same on every machine, process
and Python version that keeps ``random``'s documented seeding and ``shuffle``): the same
``(seed, epoch, n)`` always gives the same order; another epoch, another order. Resuming at
sample ``start`` continues exactly where ``start`` samples of that order had been consumed;
batches are cut from there (the last one may be short).

Example:
    >>> epoch_order(5, shuffle=False)
    [0, 1, 2, 3, 4]
    >>> a = epoch_order(10, shuffle=True, seed=7, epoch=0)
    >>> a == epoch_order(10, shuffle=True, seed=7, epoch=0), a == epoch_order(10, shuffle=True, seed=7, epoch=1)
    (True, False)
    >>> list(cut_batches([4, 2, 0, 3, 1], 2, start=1))
    [[2, 0], [3, 1]]
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from ..errors import OptionError

__all__ = ["cut_batches", "epoch_order"]


def epoch_order(n: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[int]:
    """The sample indices of one epoch over ``n`` samples."""
    order = list(range(n))
    if shuffle:
        random.Random(f"iac_spark:{int(seed)}:{int(epoch)}").shuffle(order)
    return order


def cut_batches(order: Sequence[int], batch_size: int, *, start: int = 0) -> Iterator[list[int]]:
    """``order[start:]`` in batches of ``batch_size`` (the last may be short)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(order):
        raise OptionError(f"start must be an int in [0, {len(order)}] (samples), got {start!r}")
    for i in range(start, len(order), batch_size):
        yield list(order[i : i + batch_size])
