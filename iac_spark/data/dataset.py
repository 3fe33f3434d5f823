"""``RecordDataset``: the records a catalog query selects, as a map-style training dataset.

``RecordDataset(out, query, decode=...)`` runs ``query`` once over the committed catalog of
``out`` (at ``as_of``, default the latest version) and keeps the result: the query's columns
and, per row, the pack and row of the record (:mod:`.selection`). ``ds[i]`` is a dict of
row ``i``'s columns plus the decoded payload under the key named by ``decode``:

* ``"bytes"``: the instance's original Part-10 file, byte-exact;
* ``"dataset"``: a ``pydicom.Dataset`` of it (pixel data included);
* ``"pixels"``: a ``numpy.ndarray`` equal to pydicom's ``pixel_array``.

The object holds no open file: packs are opened on first use, once per process (the native
reader memory-maps them), and a pickled or forked copy opens its own, so it works as a
PyTorch ``Dataset`` in ``DataLoader`` workers (spawn or fork) without importing torch.
``ds[[i, j]]`` / ``ds.__getitems__([i, j])`` fetch several samples at once (one native batch
decode per pack; PyTorch's fetcher calls ``__getitems__`` when it is there).

:meth:`RecordDataset.iter_batches` is a loader of its own: a deterministic order per
``(seed, epoch)`` (:mod:`.order`), resumable at any sample ``start``, optionally computed by
worker processes (:mod:`.workers`). :meth:`RecordDataset.series` stacks a series' pixels in
slice order.

Example:
    >>> import tempfile, iac_spark.catalog as cat
    >>> from iac_spark.testing.corpus import CorpusSpec, generate_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> _ = generate_corpus(f"{tmp}/src", CorpusSpec(patients=1, ct_slices=4, mr_slices=2,
    ...                                              ct_size=16, mr_size=16))
    >>> _ = cat.build(None, [f"{tmp}/src"], f"{tmp}/out", executor="local")
    >>> ds = RecordDataset(f"{tmp}/out", "SELECT pack_id, row, modality, instance_number "
    ...                    "FROM records WHERE NOT retired AND modality = 'CT' "
    ...                    "ORDER BY instance_number", decode="pixels")
    >>> len(ds), sorted(ds[0]), ds[0]["pixels"].shape
    (4, ['instance_number', 'modality', 'pack_id', 'pixels', 'row'], (16, 16))
    >>> [len(b) for b in ds.iter_batches(3, shuffle=True, seed=1)]
    [3, 1]
    >>> uid = cat.sql(f"{tmp}/out", "SELECT series_instance_uid FROM series "
    ...               "WHERE modality = 'CT'").column(0)[0].as_py()
    >>> ds.series(uid).shape
    (4, 16, 16)
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, get_args, overload

from ..errors import IacSparkError, OptionError
from .decode import Where
from .errors import CohortQueryError, ForkedCatalogError
from .layouts import LAYOUTS, PackLayout
from .order import cut_batches, epoch_order
from .selection import PackRef, Selection, select
from .workers import ordered_batches

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..catalog.api import Catalog
    from ..catalog.store import AsOf

# The catalog (delta-rs, DataFusion) is imported where it is used: a worker process that
# unpickles a dataset to read samples never needs it.

__all__ = ["Decode", "RecordDataset", "SeriesShapeError"]

Decode = Literal["bytes", "dataset", "pixels"]
_DECODES: tuple[str, ...] = get_args(Decode)


class SeriesShapeError(IacSparkError, ValueError):
    """:meth:`RecordDataset.series` found instances whose pixel arrays differ in shape (e.g.
    a localizer or a derived image filed in the same series), so they cannot be stacked. The
    message lists the shapes; read the instances one by one (``ds[i]``) instead."""


class RecordDataset:
    """The records ``query`` selects from the catalog of ``out``, decoded as ``decode`` says.

    ``query`` (DataFusion SQL over the catalog views ``records``, ``series``, ``studies``,
    ``packs``...) must return ``pack_id`` and ``row``, or ``sop_instance_uid``; default: every
    live DICOM record, in pack order, with the columns of
    :data:`~iac_spark.data.selection.DEFAULT_COLUMNS`. Raises
    :class:`~iac_spark.data.errors.CohortQueryError` for a result it cannot locate and
    :class:`~iac_spark.errors.CatalogError` when the SQL itself fails.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        query: str | None = None,
        *,
        decode: Decode = "bytes",
        as_of: AsOf = None,
    ) -> None:
        if decode not in _DECODES:
            raise OptionError(f"decode must be one of {list(_DECODES)}, got {decode!r}")
        from ..catalog.api import Catalog

        self.out = os.path.abspath(os.fspath(out))
        self.decode: Decode = decode
        self._catalog: Catalog | None = Catalog(self.out, as_of=as_of)
        self._selection: Selection = select(self._catalog, query)
        self._reset()

    # ---- process-local state -------------------------------------------------------------

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._open: dict[int, PackLayout] = {}
        self._inherited: list[Any] = []  # readers a fork copied: never touched again
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_catalog", "_open", "_inherited", "_lock", "_pid"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._catalog = None
        self._reset()

    def _here(self) -> None:
        """In a forked copy, leave the parent's readers alone and start with none."""
        if self._pid != os.getpid():
            inherited = [*self._inherited, (self._open, self._catalog)]
            self._catalog = None
            self._reset()
            self._inherited = inherited

    def _pack(self, i: int) -> PackLayout:
        self._here()
        reader = self._open.get(i)
        if reader is None:
            with self._lock:
                reader = self._open.get(i)
                if reader is None:
                    ref = self._selection.packs[i]
                    reader = self._open[i] = LAYOUTS[ref.payload_type](ref.path)
        return reader

    def _cat(self) -> Catalog:
        from ..catalog.api import Catalog

        self._here()
        if self._catalog is None:
            self._catalog = Catalog(self.out, as_of=self.version)
        return self._catalog

    def close(self) -> None:
        """Close the packs this process opened (they reopen on the next read)."""
        with self._lock:
            for reader in self._open.values():
                reader.close()
            self._open.clear()

    # ---- the selection -------------------------------------------------------------------

    @property
    def query(self) -> str:
        """The SQL the selection came from (the default query when none was given)."""
        return self._selection.query

    @property
    def version(self) -> int:
        """The catalog version the query ran at; pickled copies and :meth:`series` use it too."""
        return self._selection.version

    @property
    def columns(self) -> list[str]:
        """The query's columns (each item has them, plus the key named by ``decode``)."""
        return list(self._selection.columns.column_names)

    @property
    def table(self) -> pa.Table:
        """The query's result (Arrow), one row per sample, in sample order."""
        return self._selection.columns

    @property
    def packs(self) -> tuple[PackRef, ...]:
        """The packs the selected records live in."""
        return self._selection.packs

    def location(self, index: int) -> tuple[str, int]:
        """``(pack_id, row)`` of sample ``index``."""
        i = self._index(index)
        return self._selection.packs[self._selection.pack[i]].pack_id, self._selection.row[i]

    def __len__(self) -> int:
        return len(self._selection)

    def __repr__(self) -> str:
        return (
            f"RecordDataset({self.out!r}, {len(self)} records in {len(self.packs)} packs, "
            f"decode={self.decode!r}, version={self.version})"
        )

    def _index(self, index: SupportsIndex) -> int:
        n = len(self)
        i = index.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {index} out of range for a dataset of {n}")
        return i

    # ---- reading -------------------------------------------------------------------------

    @overload
    def __getitem__(self, index: SupportsIndex) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: Iterable[SupportsIndex]) -> list[dict[str, Any]]: ...

    def __getitem__(
        self, index: SupportsIndex | Iterable[SupportsIndex]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Sample ``index`` (a dict), or the samples of a list / array of indices (a list)."""
        if isinstance(index, str | bytes):
            raise TypeError(f"sample indices are integers, got {index!r}")
        try:
            single = operator.index(index)  # type: ignore[arg-type]
        except TypeError:
            return self.__getitems__(list(index))  # type: ignore[arg-type]
        return self.__getitems__([single])[0]

    def __getitems__(self, indices: Sequence[SupportsIndex]) -> list[dict[str, Any]]:
        """The samples at ``indices``, in order; one batch read per pack."""
        sel = self._selection
        idx = [self._index(i) for i in indices]
        items = sel.columns.take(idx).to_pylist() if idx else []
        by_pack: dict[int, list[int]] = {}
        for k, i in enumerate(idx):
            by_pack.setdefault(sel.pack[i], []).append(k)
        for p, ks in by_pack.items():
            reader = self._pack(p)
            rows = [sel.row[idx[k]] for k in ks]
            if self.decode == "bytes":
                payloads: list[Any] = reader.read_bytes(rows)
            else:
                where = [self._where(p, idx[k], items[k]) for k in ks]
                read = reader.read_pixels if self.decode == "pixels" else reader.read_datasets
                payloads = read(rows, where)
            for k, payload in zip(ks, payloads, strict=True):
                items[k][self.decode] = payload
        return items

    def _where(self, pack: int, i: int, item: dict[str, Any]) -> Where:
        ref = self._selection.packs[pack]
        sop = item.get("sop_instance_uid")
        return Where(
            ref.pack_id, self._selection.row[i], ref.path, sop if isinstance(sop, str) else None
        )

    def order(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> list[int]:
        """The sample indices of one epoch (see :mod:`iac_spark.data.order`)."""
        return epoch_order(len(self), shuffle=shuffle, seed=seed, epoch=epoch)

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        workers: int = 0,
        mp_context: Literal["spawn", "fork", "forkserver"] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """One epoch in batches: lists of items (``ds[i]``), in :meth:`order`, from sample ``start``.

        The same ``(shuffle, seed, epoch)`` always gives the same sample order, whatever
        ``workers`` is; ``start=k`` skips the first ``k`` samples of that order, so a run that
        consumed ``k`` samples resumes with exactly the rest. ``workers=N`` decodes the
        batches in ``N`` processes (started for this epoch; ``mp_context`` picks the start
        method, Python's default when None); ``0`` decodes in this process.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise OptionError(f"workers must be an int >= 0, got {workers!r}")
        batches = cut_batches(self.order(shuffle=shuffle, seed=seed, epoch=epoch), batch_size,
                              start=start)  # fmt: skip
        yield from ordered_batches(self, batches, workers=workers, mp_context=mp_context)

    def series(self, series_instance_uid: str) -> np.ndarray:
        """The pixels of a series' live records stacked in slice order: ``(slices, rows, cols)``.

        The records are those of the catalog at :attr:`version` (not only the ones the query
        selected). Slice order is the position along the slice normal (the same definition
        as the ``series`` view's ``slice_step``) when every instance has one, else
        InstanceNumber; ties keep pack order. Raises
        :class:`~iac_spark.data.errors.CohortQueryError` for a series with no live record,
        :class:`SeriesShapeError` when the instances' shapes differ, and
        :class:`~iac_spark.data.errors.ForkedCatalogError` in a forked worker (the catalog
        query needs delta-rs, which does not survive ``fork``; samples need no catalog).
        """
        import numpy as np

        from ..catalog.store import sql_str
        from ..catalog.views import SLICE_ELEMENTS, SLICE_NORMAL, SLICE_POSITION

        cols = "pack_id, row, sop_instance_uid, instance_number"
        sql = (
            f"SELECT {cols}, {SLICE_POSITION} AS pos FROM (SELECT *, {SLICE_NORMAL} FROM "
            f"(SELECT {cols}, {SLICE_ELEMENTS} FROM records WHERE NOT retired AND "
            f"series_instance_uid = {sql_str(series_instance_uid)}) e) n"
        )
        try:
            cat = self._cat()
            recs = cat.sql(sql).to_pylist()
        except BaseException as exc:  # delta-rs panics (a BaseException) in a forked child
            if "Forked process detected" not in str(exc):
                raise
            raise ForkedCatalogError(
                f"RecordDataset.series({series_instance_uid!r}) queries the catalog, which "
                "delta-rs cannot do in a process forked from one that used it: call series() "
                "in the main process or use spawn / forkserver workers"
            ) from exc
        if not recs:
            raise CohortQueryError(
                f"series {series_instance_uid} has no live record in the catalog of {self.out} "
                f"(version {self.version})"
            )
        big = float("inf")
        if all(r["pos"] is not None for r in recs):
            recs.sort(key=lambda r: (r["pos"], r["instance_number"] if r["instance_number"] is not None else big, r["pack_id"], r["row"]))  # fmt: skip
        else:
            recs.sort(key=lambda r: (r["instance_number"] is None, r["instance_number"] or 0, r["pack_id"], r["row"]))  # fmt: skip
        packs = {p.pack_id: i for i, p in enumerate(self._selection.packs)}
        planes: list[Any] = [None] * len(recs)
        by_pack: dict[str, list[int]] = {}
        for k, r in enumerate(recs):
            by_pack.setdefault(r["pack_id"], []).append(k)
        for pack_id, ks in by_pack.items():
            reader, path = self._series_pack(cat, pack_id, packs)
            where = [Where(pack_id, recs[k]["row"], path, recs[k]["sop_instance_uid"]) for k in ks]
            for k, arr in zip(ks, reader.read_pixels([recs[k]["row"] for k in ks], where),
                              strict=True):  # fmt: skip
                planes[k] = arr
        shapes = sorted({a.shape for a in planes})
        if len(shapes) > 1:
            raise SeriesShapeError(
                f"series {series_instance_uid}: its {len(planes)} instances have pixel shapes "
                f"{shapes}; they cannot be stacked"
            )
        return np.stack(planes)

    def _series_pack(
        self, cat: Catalog, pack_id: str, known: dict[str, int]
    ) -> tuple[PackLayout, str]:
        """A reader for ``pack_id``: one of the selection's packs, or (rarely) another one."""
        from ..catalog.store import sql_str

        if pack_id in known:
            i = known[pack_id]
            return self._pack(i), self._selection.packs[i].path
        row = cat.sql(f"SELECT path, payload_type FROM packs WHERE pack_id = {sql_str(pack_id)}")
        path, kind = (row.column(c)[0].as_py() for c in ("path", "payload_type"))
        if kind not in LAYOUTS:
            raise CohortQueryError(f"pack {pack_id} has payload_type {kind!r}, not a DICOM layout")
        return LAYOUTS[kind](cat.pack_path(path)), cat.pack_path(path)
