"""The committed view of every catalog table, defined once as SQL (DESIGN.md "Catalog").

The ``runs`` table is the commit point: a run is *committed* once its ``runs`` row with
``status = 'committed'`` exists. Every other table is read through a join on the committed
runs, so a reader never sees half a build; the retirement flags (``records.retired``,
``documents.retired``, ``sources.superseded``) count only when the retiring run is committed as
well, so an interrupted build that already flagged old rows changes nothing a reader sees.

This module holds the one definition. It is rendered for each engine by a :class:`Dialect`
(how a raw table is referenced, how identifiers are quoted): DataFusion over delta-rs tables
(:mod:`.api`, the Arrow readers of :mod:`.snapshot`), Spark SQL over Spark Delta tables
(:mod:`.spark_delta`), and persistent metastore / Unity Catalog views. The derived views
``series`` and ``studies`` are defined the same way, over the committed ``records``.

Example:
    >>> d = Dialect(ref=lambda name: f"raw_{name}", quote=lambda c: f'"{c}"')
    >>> print(view_sql("errors", d))  # doctest: +NORMALIZE_WHITESPACE
    SELECT t."run_id", t."source_path", t."source_member", t."stage", t."error", t."at"
    FROM raw_errors t JOIN (SELECT DISTINCT run_id FROM raw_runs WHERE status = 'committed') c
    ON t.run_id = c.run_id
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .schema import SCHEMAS, TableName

__all__ = [
    "COMMITTED",
    "DERIVED_VIEWS",
    "FAILED",
    "RETIRE_COLUMNS",
    "VIEWS",
    "Dialect",
    "derived_sql",
    "view_sql",
]

COMMITTED = "committed"
FAILED = "failed"

#: Per table: (flag column, "by run" column), effective only when the "by run" is committed.
RETIRE_COLUMNS: dict[str, tuple[str, str]] = {
    "records": ("retired", "retired_by_run"),
    "documents": ("retired", "retired_by_run"),
    "sources": ("superseded", "superseded_by_run"),
}


@dataclass(frozen=True)
class Dialect:
    """How an engine spells a raw table reference and a quoted identifier."""

    ref: Callable[[str], str]
    quote: Callable[[str], str]


def _committed(d: Dialect) -> str:
    return f"(SELECT DISTINCT run_id FROM {d.ref('runs')} WHERE status = '{COMMITTED}')"


def view_sql(name: TableName, d: Dialect) -> str:
    """``SELECT`` of the committed rows of table ``name`` (contract columns, in order)."""
    q = d.quote
    if name == "runs":
        cols = ", ".join(q(f.name) for f in SCHEMAS["runs"])
        return f"SELECT {cols} FROM {d.ref('runs')} WHERE status = '{COMMITTED}'"
    flags = RETIRE_COLUMNS.get(name)
    cols_sql = []
    for f in SCHEMAS[name]:
        if flags is not None and f.name in flags:
            flag, by = flags
            eff = f"COALESCE(t.{q(flag)} AND r.run_id IS NOT NULL, false)"
            expr = eff if f.name == flag else f"CASE WHEN {eff} THEN t.{q(by)} END"
            cols_sql.append(f"{expr} AS {q(f.name)}")
        else:
            cols_sql.append(f"t.{q(f.name)}")
    sql = (
        f"SELECT {', '.join(cols_sql)} FROM {d.ref(name)} t "
        f"JOIN {_committed(d)} c ON t.run_id = c.run_id"
    )
    if flags is not None:
        sql += f" LEFT JOIN {_committed(d)} r ON t.{q(flags[1])} = r.run_id"
    return sql


#: Views over the committed tables, built from other views (referenced by their view names).
DERIVED_VIEWS: dict[str, str] = {
    "series": """
SELECT series_instance_uid,
       min(study_instance_uid) AS study_instance_uid,
       min(patient_id) AS patient_id,
       min(modality) AS modality,
       min(series_description) AS series_description,
       min(body_part_examined) AS body_part_examined,
       count(*) AS num_instances,
       min(rows) AS rows, min(columns) AS columns,
       min(slice_thickness) AS slice_thickness,
       sum(raw_length) AS raw_bytes,
       array_agg(DISTINCT pack_id) AS pack_ids
FROM {records}
WHERE NOT retired AND series_instance_uid IS NOT NULL
GROUP BY series_instance_uid
""",
    "studies": """
SELECT study_instance_uid,
       min(patient_id) AS patient_id,
       min(study_date) AS study_date,
       min(study_description) AS study_description,
       array_agg(DISTINCT modality) AS modalities,
       count(DISTINCT series_instance_uid) AS num_series,
       count(*) AS num_instances,
       sum(raw_length) AS raw_bytes
FROM {records}
WHERE NOT retired AND study_instance_uid IS NOT NULL
GROUP BY study_instance_uid
""",
}

#: Every view name a catalog reader exposes: the tables, then the derived views.
VIEWS: tuple[str, ...] = (*SCHEMAS, *DERIVED_VIEWS)


def derived_sql(name: str, prefix: str = "") -> str:
    """The ``SELECT`` of a derived view, over the committed views named ``<prefix><table>``."""
    return " ".join(DERIVED_VIEWS[name].format(records=f"{prefix}records").split())
