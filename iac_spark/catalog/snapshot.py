"""The committed view of the catalog: what every reader (API, SQL, Spark views, verify) sees.

The ``runs`` table is the commit point. A run is *committed* once its ``runs`` row
(``status = 'committed'``) is in the table; every other table is filtered to
``run_id IN (committed runs)``, so a reader never sees half a build. Retirement
flags are effective only when the retiring run is committed as well:
``records.retired`` reads as ``retired AND retired_by_run IN (committed runs)`` (same for
``sources.superseded``), so an interrupted build that already flagged old rows changes
nothing a reader sees.

``as_of`` (see :data:`iac_spark.catalog.store.AsOf`) selects the ``runs`` table
version; the other tables are read at their latest version and filtered to the runs
committed at that version. Because those tables are append-only (apart from the
retirement flags, which are resolved as above), this reproduces exactly what a
reader saw when the ``runs`` table was at that version: ``as_of=N`` is the catalog
after the N-th ``runs`` commit (version 0 is the empty catalog; each build, committed
or failed, adds one version), and ``as_of=<datetime>`` is the catalog as it was at
that time. Only the ``runs`` table needs its Delta history for time travel.

Example:
    >>> import tempfile
    >>> from iac_spark.catalog.store import DeltaRsStore
    >>> store = DeltaRsStore(tempfile.mkdtemp()); store.ensure()
    >>> snap = Snapshot.load(store)
    >>> snap.version, sorted(snap.committed), snap.table("records").num_rows
    (0, [], 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError
from .schema import SCHEMAS, TableName
from .store import AsOf, CatalogStore

__all__ = ["COMMITTED", "FAILED", "RETIRE_COLUMNS", "Snapshot", "effective_flags"]

COMMITTED = "committed"
FAILED = "failed"

#: Per table: (flag column, "by run" column) resolved against the committed runs.
RETIRE_COLUMNS: dict[str, tuple[str, str]] = {
    "records": ("retired", "retired_by_run"),
    "sources": ("superseded", "superseded_by_run"),
}


def effective_flags(table: pa.Table, name: str, committed: frozenset[str]) -> pa.Table:
    """Resolve the retirement flag of ``records`` / ``sources`` against ``committed`` runs.

    >>> t = pa.table({"retired": [True, True, False], "retired_by_run": ["a", "x", None]})
    >>> effective_flags(t, "records", frozenset({"a"})).to_pydict()
    {'retired': [True, False, False], 'retired_by_run': ['a', None, None]}
    """
    cols = RETIRE_COLUMNS.get(name)
    if cols is None or cols[0] not in table.column_names or cols[1] not in table.column_names:
        return table
    flag_name, by_name = cols
    flag, by = table.column(flag_name), table.column(by_name)
    by_committed = pc.fill_null(
        pc.is_in(by, value_set=pa.array(sorted(committed), pa.string())), False
    )
    eff = pc.and_(pc.fill_null(flag, False), by_committed)
    table = table.set_column(table.schema.get_field_index(flag_name), flag_name, eff)
    by_eff = pc.if_else(eff, by, pa.scalar(None, pa.string()))
    return table.set_column(table.schema.get_field_index(by_name), by_name, by_eff)


@dataclass(frozen=True)
class Snapshot:
    """The committed runs at one ``runs`` version, and committed-filtered reads of every table."""

    store: CatalogStore
    version: int
    all_runs: pa.Table  # every runs row at ``version`` (failed runs too)
    committed: frozenset[str]

    @classmethod
    def load(cls, store: CatalogStore, as_of: AsOf = None) -> Snapshot:
        """Read the ``runs`` table (at ``as_of``) once; raises :class:`CatalogError` if absent."""
        if not store.exists():
            raise CatalogError(f"no catalog under {store.out}: run a build into it first")
        version = store.version("runs", as_of)
        runs = store.read("runs", as_of=version)
        if runs.num_rows:
            runs = runs.sort_by([("committed_at", "ascending"), ("run_id", "ascending")])
        status = runs.column("status")
        committed = frozenset(
            r
            for r in pc.filter(runs.column("run_id"), pc.equal(status, COMMITTED)).to_pylist()
            if r is not None
        )
        return cls(store, version, runs, committed)

    def runs(self, *, include_failed: bool = False) -> pa.Table:
        """Committed runs (plus failed ones with ``include_failed``), in commit order."""
        if include_failed:
            return self.all_runs
        return self.all_runs.filter(pc.equal(self.all_runs.column("status"), COMMITTED))

    def table(self, name: TableName, *, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows of committed runs only, with effective retirement flags; optionally projected."""
        if name == "runs":
            t = self.runs()
            return t.select(list(columns)) if columns is not None else t
        wanted = list(columns) if columns is not None else [f.name for f in SCHEMAS[name]]
        needed = list(dict.fromkeys([*wanted, "run_id", *RETIRE_COLUMNS.get(name, ())]))
        raw = self.store.read(name, columns=needed)
        mask = pc.is_in(
            raw.column("run_id"), value_set=pa.array(sorted(self.committed), pa.string())
        )
        kept = raw.filter(pc.fill_null(mask, False))
        return effective_flags(kept, name, self.committed).select(wanted)
