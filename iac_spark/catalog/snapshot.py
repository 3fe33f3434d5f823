"""A consistent read of the catalog at one ``runs`` version, through the committed views.

``as_of`` (see :data:`iac_spark.catalog.store.AsOf`) selects the ``runs`` table version; the
other tables are read at their latest version and joined with the runs committed at that
version (:mod:`.views`). Because those tables are append-only (apart from the retirement flags,
which resolve against the committed runs too), this reproduces exactly what a reader saw when
the ``runs`` table was at that version: ``as_of=N`` is the catalog after the N-th ``runs``
commit (version 0 is the empty catalog; each build, committed or failed, adds one version).

Every read goes through the engine's SQL session (DataFusion for delta-rs, Spark SQL for Spark
Delta), so the committed rule exists once, in :func:`~iac_spark.catalog.views.view_sql`.

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
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogError
from .schema import SCHEMAS, TableName
from .store import AsOf, CatalogStore, SqlSession
from .views import COMMITTED, DERIVED_VIEWS, FAILED, RETIRE_COLUMNS, VIEWS, derived_sql, view_sql

__all__ = ["COMMITTED", "FAILED", "RETIRE_COLUMNS", "Snapshot", "plain_types"]


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain(t.value_type))
    return t


def plain_types(table: pa.Table) -> pa.Table:
    """Engine-specific types (string views, large lists) as the plain types every tool reads.

    >>> plain_types(pa.table({"a": pa.array(["x"], pa.string_view())})).schema.field("a").type
    DataType(string)
    """
    schema = pa.schema([pa.field(f.name, _plain(f.type), f.nullable) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


@dataclass
class Snapshot:
    """The committed runs at one ``runs`` version, and committed-view reads of every table."""

    store: CatalogStore
    version: int
    all_runs: pa.Table  # every runs row at ``version`` (failed runs too)
    committed: frozenset[str]
    _session: SqlSession | None = field(default=None, repr=False)

    @classmethod
    def load(cls, store: CatalogStore, as_of: AsOf = None) -> Snapshot:
        """Read the ``runs`` table (at ``as_of``) once; raises :class:`CatalogError` if absent."""
        if not store.exists():
            raise CatalogError(f"no catalog under {store.out}: run a build into it first")
        store.ensure()  # tables added by a newer version (e.g. documents) are created empty
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

    @property
    def session(self) -> SqlSession:
        """The SQL session of this snapshot, with every view created (made once, on first use)."""
        if self._session is None:
            s = self.store.session(self.version)
            for name in SCHEMAS:
                s.create_view(name, view_sql(name, s.dialect))
            for derived in DERIVED_VIEWS:
                s.create_view(derived, derived_sql(derived, s.prefix))
            self._session = s
        return self._session

    def sql(self, query: str) -> pa.Table:
        """Run ``query`` over the committed views (``packs`` … ``runs``, ``series``, ``studies``)."""
        try:
            return plain_types(self.session.execute(query))
        except Exception as exc:
            raise CatalogError(f"SQL failed on the catalog of {self.store.out}: {exc}") from exc

    def runs(self, *, include_failed: bool = False) -> pa.Table:
        """Committed runs (plus failed ones with ``include_failed``), in commit order."""
        if include_failed:
            return self.all_runs
        return self.all_runs.filter(pc.equal(self.all_runs.column("status"), COMMITTED))

    def table(
        self, name: TableName, *, columns: Sequence[str] | None = None, where: str | None = None
    ) -> pa.Table:
        """Committed rows of ``name`` (effective retirement flags), optionally projected/filtered.

        ``where`` is a SQL condition over the view's columns (the engine's dialect).
        """
        if name == "runs" and where is None:
            t = self.runs()
            return t.select(list(columns)) if columns is not None else t
        if name not in VIEWS:
            raise CatalogError(f"unknown catalog table {name!r}")
        schema = SCHEMAS[name]
        wanted = list(columns) if columns is not None else schema.names
        q = self.session.dialect.quote
        sql = f"SELECT {', '.join(q(c) for c in wanted)} FROM {name}"
        if where:
            sql += f" WHERE {where}"
        table = self.sql(sql)
        return pa.table(
            [table.column(i).cast(schema.field(c).type) for i, c in enumerate(wanted)],
            names=wanted,
        )
