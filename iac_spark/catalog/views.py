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
    "POSITION_GAP_FACTOR",
    "RETIRE_COLUMNS",
    "SLICE_ELEMENTS",
    "SLICE_NORMAL",
    "SLICE_POSITION",
    "SPARK_FUNCTIONS",
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


#: The slice position of a record along its slice normal (mm), in three select stages over
#: ``records`` columns: :data:`SLICE_ELEMENTS` (the ImagePositionPatient and
#: ImageOrientationPatient values), :data:`SLICE_NORMAL` (the normal: row cosines × column
#: cosines, unnormalised) and :data:`SLICE_POSITION` (the position projected on the normalised
#: normal; ImagePositionPatient's z without a usable orientation, i.e. a missing one or a
#: degenerate normal; null without a 3-value ImagePositionPatient). Staged so that each array
#: element is read once: engines do not share subexpressions inside ``CASE`` branches. Used by
#: ``series`` and by :meth:`iac_spark.data.RecordDataset.series`.
SLICE_ELEMENTS = ", ".join(
    [
        "cardinality(image_position_patient) AS ipp_n",
        "cardinality(image_orientation_patient) AS iop_n",
        *(f"array_element(image_position_patient, {i}) AS p{i}" for i in (1, 2, 3)),
        *(f"array_element(image_orientation_patient, {i}) AS o{i}" for i in range(1, 7)),
    ]
)
#: Select-list items n1, n2, n3 over :data:`SLICE_ELEMENTS`.
SLICE_NORMAL = "o2 * o6 - o3 * o5 AS n1, o3 * o4 - o1 * o6 AS n2, o1 * o5 - o2 * o4 AS n3"
#: The slice position over :data:`SLICE_ELEMENTS` and :data:`SLICE_NORMAL`.
SLICE_POSITION = """
CASE WHEN ipp_n <> 3 THEN NULL
     WHEN iop_n = 6 AND n1 * n1 + n2 * n2 + n3 * n3 > 0.5
     THEN (p1 * n1 + p2 * n2 + p3 * n3) / sqrt(n1 * n1 + n2 * n2 + n3 * n3)
     ELSE p3
END"""

#: A series has a position gap when its largest step between distinct slice positions exceeds
#: this many median steps (plus 1 µm for rounding): a missing slice doubles one step.
POSITION_GAP_FACTOR = 1.5

#: Views over the committed tables, built from other views (``{records}`` is the committed
#: ``records`` view of the session). One SQL text for DataFusion and Spark SQL: only functions
#: both engines have (``median``, ``lead``, ``array_agg(DISTINCT ...) FILTER``, ``array_sort``,
#: ``cardinality``), plus ``array_element(array, i)`` (1-based; built into DataFusion, defined
#: for Spark SQL by :data:`SPARK_FUNCTIONS`). Both hold live records only: committed, not retired.
#:
#: ``series``: one row per series. ``slice_step`` is the median step between the series'
#: distinct slice positions (:data:`SLICE_POSITION`, rounded to 1 µm), ``z_extent`` the distance
#: between the first and the last slice; ``has_instance_gap``: the InstanceNumbers from min to
#: max are not all there; ``has_position_gap``: one step is more than
#: :data:`POSITION_GAP_FACTOR` median steps (each null when the series has no instance numbers /
#: no positions). ``studies``: one row per study, ``modalities`` sorted. (No ``WHERE`` on the
#: computed position: DataFusion pushes such a filter into the scan and evaluates the position
#: twice, 5x slower; the nulls sort last and add no step instead. The positions are computed
#: once, in ``placed``: engines do not materialise a CTE used twice.)
DERIVED_VIEWS: dict[str, str] = {
    "series": f"""
WITH live AS (
  SELECT series_instance_uid, study_instance_uid, patient_id, modality, series_description,
         body_part_examined, rows, columns, slice_thickness, instance_number, raw_length, pack_id,
         {SLICE_ELEMENTS}
  FROM {{records}}
  WHERE NOT retired AND series_instance_uid IS NOT NULL
),
normals AS (SELECT *, {SLICE_NORMAL} FROM live),
placed AS (SELECT series_instance_uid, {SLICE_POSITION} AS slice_position FROM normals),
positions AS (
  SELECT series_instance_uid AS uid, round(slice_position, 3) AS slice_position,
         min(slice_position) AS lo, max(slice_position) AS hi
  FROM placed
  GROUP BY series_instance_uid, round(slice_position, 3)
),
steps AS (
  SELECT uid, slice_position, lo, hi,
         lead(slice_position) OVER (PARTITION BY uid ORDER BY slice_position NULLS LAST)
           - slice_position AS step
  FROM positions
),
step_stats AS (
  SELECT uid, median(step) AS slice_step, max(step) AS max_step, max(hi) - min(lo) AS z_extent,
         count(slice_position) AS positioned
  FROM steps GROUP BY uid
),
per_series AS (
  SELECT series_instance_uid,
         min(study_instance_uid) AS study_instance_uid,
         min(patient_id) AS patient_id,
         min(modality) AS modality,
         min(series_description) AS series_description,
         min(body_part_examined) AS body_part_examined,
         count(*) AS num_instances,
         min(rows) AS rows_, min(columns) AS columns_,
         min(slice_thickness) AS slice_thickness,
         count(DISTINCT instance_number) AS instance_numbers,
         CAST(max(instance_number) AS BIGINT) - CAST(min(instance_number) AS BIGINT) + 1
           AS instance_span,
         sum(raw_length) AS raw_bytes,
         array_sort(array_agg(DISTINCT pack_id)) AS pack_ids
  FROM live
  GROUP BY series_instance_uid
)
SELECT a.series_instance_uid, a.study_instance_uid, a.patient_id, a.modality,
       a.series_description, a.body_part_examined, a.num_instances,
       a.rows_ AS rows, a.columns_ AS columns, a.slice_thickness,
       s.slice_step, s.z_extent,
       CASE WHEN a.instance_numbers = 0 THEN NULL
            ELSE a.instance_span > a.instance_numbers END AS has_instance_gap,
       CASE WHEN s.positioned = 0 THEN NULL
            WHEN s.max_step IS NULL THEN false
            ELSE s.max_step > {POSITION_GAP_FACTOR} * s.slice_step + 0.001 END AS has_position_gap,
       a.raw_bytes, a.pack_ids
FROM per_series a JOIN step_stats s ON a.series_instance_uid = s.uid
""",
    "studies": """
SELECT study_instance_uid,
       min(patient_id) AS patient_id,
       min(study_date) AS study_date,
       min(study_description) AS study_description,
       CASE WHEN count(modality) = 0 THEN NULL
            ELSE array_sort(array_agg(DISTINCT modality) FILTER (WHERE modality IS NOT NULL))
       END AS modalities,
       count(DISTINCT series_instance_uid) AS num_series,
       count(*) AS num_instances,
       sum(raw_length) AS raw_bytes
FROM {records}
WHERE NOT retired AND study_instance_uid IS NOT NULL
GROUP BY study_instance_uid
""",
}

#: Statements that define, for a Spark SQL session, the functions :data:`DERIVED_VIEWS` use
#: that Spark SQL lacks under DataFusion's name: ``array_element`` (DataFusion's 1-based element
#: access, null when out of range) is Spark's ``try_element_at``. Spark's ``a[i]`` is 0-based and
#: DataFusion's 1-based, so neither engine's bracket syntax may appear in shared SQL.
SPARK_FUNCTIONS: tuple[str, ...] = (
    "CREATE OR REPLACE TEMPORARY FUNCTION array_element(a ARRAY<DOUBLE>, i INT) "
    "RETURNS DOUBLE RETURN try_element_at(a, i)",
)

#: Every view name a catalog reader exposes: the tables, then the derived views.
VIEWS: tuple[str, ...] = (*SCHEMAS, *DERIVED_VIEWS)


def derived_sql(name: str, prefix: str = "") -> str:
    """The ``SELECT`` of a derived view, over the committed views named ``<prefix><table>``."""
    return " ".join(DERIVED_VIEWS[name].format(records=f"{prefix}records").split())
