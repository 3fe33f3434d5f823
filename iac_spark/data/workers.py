"""Batches computed by worker processes, yielded in order.

``ordered_batches(source, batches, workers=N)`` starts ``N`` processes (a
``ProcessPoolExecutor``; start method from ``mp_context``, Python's default when None), hands
each the picklable source once (a dataset's packs then open lazily inside the worker), and
keeps at most ``prefetch × N`` batches in flight. Results come back in submission order
whatever the worker timing, so the sample order is the one the caller planned. Closing the
generator early cancels the batches not yet started and waits for the running ones. An
exception raised for a batch (e.g. :class:`~iac_spark.data.errors.SampleDecodeError`) is
re-raised in the caller at that batch.

Large NumPy arrays in a batch (pixels) do not travel through the result pipe: on a 2-core
machine pickling a 512×512 16-bit slice through it costs more than decoding it. In a worker,
:data:`iac_spark.data.pixels.ALLOCATE` hands the pixel decoder arrays carved out of one POSIX
shared-memory segment per batch (a sparse ``/dev/shm`` file: only the bytes written take
memory; other large arrays are copied into it); the result carries only offsets, and the
caller maps the segment once, unlinks it at once and wraps the arrays as views on it — no
copy on the way. The mapping lives as long as one of the batch's arrays does. Without
``/dev/shm`` (not Linux), or when it is nearly full, arrays go through the pipe as usual.
Segments are registered with multiprocessing's resource tracker, so one that a dying worker
leaves behind is removed when the caller exits.

Example:
    >>> list(ordered_batches(_Echo(), [[1, 2], [3]], workers=0))
    [[1, 2], [3]]
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import multiprocessing
import os
import secrets
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any, Protocol

from .pixels import ALLOCATE

__all__ = ["BatchSource", "ordered_batches"]

#: Arrays at least this large go through shared memory.
SHARE_MIN_BYTES = 64 * 1024
_SEGMENT = 1 << 30  # sparse reservation per batch (only written pages take memory)
_ALIGN = 64
_SHM_DIR = "/dev/shm"
_SHM_TYPE = "shared_memory"  # the resource tracker's name for POSIX segments


class BatchSource(Protocol):
    """What a worker needs: picklable, and a batch fetch by sample indices."""

    def __getitems__(self, indices: Sequence[int]) -> list[Any]: ...


@dataclass(frozen=True)
class _Shared:
    """An array of a batch, left in shared-memory segment ``name`` at ``offset``."""

    name: str
    offset: int
    shape: tuple[int, ...]
    dtype: str


def _shm_usable() -> bool:
    return os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK)


def _room(size: int) -> bool:
    try:
        st = os.statvfs(_SHM_DIR)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize > 4 * size + (64 << 20)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(_SHM_DIR, name))
    resource_tracker.unregister("/" + name, _SHM_TYPE)


class _Arena:
    """Worker side: one batch's large arrays, carved out of one sparse shared-memory segment."""

    _counter = itertools.count()

    def __init__(self) -> None:
        self.name: str | None = None
        self.fd = -1
        self.mm: mmap.mmap | None = None
        self.used = 0
        self.placed: dict[int, tuple[Any, int]] = {}  # id(array) -> (array, offset)

    def _open(self, size: int) -> None:
        name = f"iacd_{os.getpid()}_{next(self._counter)}_{secrets.token_hex(4)}"
        fd = os.open(os.path.join(_SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        resource_tracker.register("/" + name, _SHM_TYPE)
        self.name, self.fd = name, fd
        try:
            os.ftruncate(fd, size)  # sparse: pages exist once written
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            self.discard()
            raise

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        import numpy as np

        dt = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        start = -(-self.used // _ALIGN) * _ALIGN
        if size < SHARE_MIN_BYTES or not _room(size):  # a full tmpfs would SIGBUS on write
            return np.empty(shape, dt)
        if self.mm is None:
            self._open(max(_SEGMENT, 2 * size))
        assert self.mm is not None
        if start + size > len(self.mm):  # past the sparse reservation: no sharing for this one
            return np.empty(shape, dt)
        arr = np.ndarray(shape, dt, buffer=self.mm, offset=start)
        self.used = start + size
        self.placed[id(arr)] = (arr, start)
        return arr

    def ship(self, a: Any) -> Any:
        """The marker of ``a`` (copied into the segment first if it is not there yet); ``a``
        itself when the segment has no room for it."""
        got = self.placed.get(id(a))
        if got is None or got[0] is not a:
            copy = self.empty(a.shape, a.dtype)
            got = self.placed.get(id(copy))
            if got is None:
                return a
            copy[...] = a
        assert self.name is not None
        return _Shared(self.name, got[1], tuple(a.shape), a.dtype.str)

    def close(self) -> None:
        """After shipping: drop our mapping, trim the file to what was written."""
        self.placed.clear()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, max(self.used, 1))
            os.close(self.fd)
            self.fd = -1
        self.mm = None  # unmapped once the last array of ours is gone

    def discard(self) -> None:
        """An error mid-batch: remove the segment."""
        name = self.name
        self.close()
        if name is not None:
            _unlink(name)
        self.name = None


_SOURCE: BatchSource | None = None  # the worker process's copy of the source
_SHARE = False


def _init(source: BatchSource, share: bool) -> None:
    global _SOURCE, _SHARE
    _SOURCE, _SHARE = source, share


def _fetch(indices: list[int]) -> list[Any]:
    assert _SOURCE is not None, "worker used before its initializer ran"
    if not _SHARE:
        return _SOURCE.__getitems__(indices)
    arena = _Arena()
    token = ALLOCATE.set(arena.empty)
    try:
        items = _ship(_SOURCE.__getitems__(indices), arena)
    except BaseException:
        arena.discard()
        raise
    finally:
        ALLOCATE.reset(token)
    arena.close()
    return items


def _ship(items: list[Any], arena: _Arena) -> list[Any]:
    """Replace the batch's large arrays by shared-memory markers (worker side)."""
    np = sys.modules.get("numpy")
    if np is None:  # nothing imported numpy: no arrays to move
        return items

    def big(v: Any) -> bool:
        return isinstance(v, np.ndarray) and v.nbytes >= SHARE_MIN_BYTES and not v.dtype.hasobject

    for i, item in enumerate(items):
        if big(item):
            items[i] = arena.ship(item)
        elif isinstance(item, dict):
            for k, v in item.items():
                if big(v):
                    item[k] = arena.ship(v)
    return items


def _receive(items: list[Any]) -> list[Any]:
    """Caller side: markers → views on their segments, each mapped once and unlinked."""
    maps: dict[str, mmap.mmap] = {}

    def view(s: _Shared) -> Any:
        import numpy as np

        mm = maps.get(s.name)
        if mm is None:
            path = os.path.join(_SHM_DIR, s.name)
            fd = os.open(path, os.O_RDWR)
            try:
                mm = maps[s.name] = mmap.mmap(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
                _unlink(s.name)
        return np.ndarray(s.shape, np.dtype(s.dtype), buffer=mm, offset=s.offset)

    for i, item in enumerate(items):
        if isinstance(item, _Shared):
            items[i] = view(item)
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(v, _Shared):
                    item[k] = view(v)
    return items


def ordered_batches(
    source: BatchSource,
    batches: Iterable[list[int]],
    *,
    workers: int,
    mp_context: str | None = None,
    prefetch: int = 2,
) -> Iterator[list[Any]]:
    """``source.__getitems__(b)`` for each batch ``b``, in order (``workers=0``: in this process)."""
    if workers == 0:
        for b in batches:
            yield source.__getitems__(b)
        return
    share = _shm_usable()
    if share:
        # one resource tracker for us and the workers, so that segments a worker creates and
        # we unlink are accounted in one place (a forked worker would otherwise start its own)
        resource_tracker.ensure_running()
    ctx = multiprocessing.get_context(mp_context)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(source, share))
    pending: deque[Future[list[Any]]] = deque()
    todo = iter(batches)
    try:
        for b in todo:
            pending.append(pool.submit(_fetch, b))
            if len(pending) >= workers * prefetch:
                break
        while pending:
            items = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_fetch, nxt))
            yield _receive(items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for f in pending:  # finished batches nobody consumed: free their segments
            if f.done() and not f.cancelled() and f.exception() is None:
                _receive(f.result())


class _Echo:
    """A stand-in source for the example: returns the indices."""

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        return list(indices)
