"""Driver-side build plan over the scan rows, columnar: errors, duplicates, patients → tasks.

The plan never touches member bytes and never holds scan rows as Python objects: it works on
an Arrow table of the few plan columns (a few hundred bytes per member) and decides

* which rows are scan errors (not packed, reported with their reason);
* which are duplicates (same identity — SOPInstanceUID for DICOM, ``doc_id`` for text — and
  same CRC-32 as a kept item, within this build or already in the catalog: packed once,
  reported) and which are conflicts (same identity, different bytes: all kept, reported);
* how whole patients are grouped into tasks, balanced by bytes (biggest first onto the
  least-loaded task), each task's rows sorted by the kind's order and written to
  ``<tasks_dir>/task-NNNNN.arrow`` for the pack task to read.

Example:
    >>> import tempfile
    >>> rows = pa.table({
    ...     "path": ["/a.zip", "/b.zip", "/a.zip"], "member": ["1.dcm", "1.dcm", "bad.dcm"],
    ...     "size": [10, 10, 5], "crc32": [1, 1, 2], "sop_instance_uid": ["1.1", "1.1", None],
    ...     "series_instance_uid": ["s", "s", None], "study_instance_uid": ["t", "t", None],
    ...     "patient_id": ["P1", "P1", None], "modality": ["CT", "CT", None],
    ...     "instance_number": pa.array([1, 1, None], pa.int32()),
    ...     "status": ["ok", "ok", "error"], "error": [None, None, "TruncatedMemberError: ..."]})
    >>> plan = plan_build(rows, DICOM_PLAN, num_tasks=2, tasks_dir=tempfile.mkdtemp())
    >>> plan.num_records, plan.duplicates.num_rows, plan.scan_errors.num_rows, len(plan.tasks)
    (1, 1, 1, 1)
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CONFLICT_SCHEMA",
    "DICOM_PLAN",
    "DUPLICATE_SCHEMA",
    "ISSUE_SCHEMA",
    "BuildPlan",
    "PlanKind",
    "TaskPlan",
    "dedupe",
    "plan_build",
    "read_task",
]

#: A member that was not packed (or was packed with a caveat), with the stage that said so.
ISSUE_SCHEMA = pa.schema(
    [
        ("source_path", pa.string()),
        ("source_member", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
    ]
)

#: ``source_*`` holds the same item (identity and CRC-32) as ``kept_*`` (null: a catalog record).
DUPLICATE_SCHEMA = pa.schema(
    [
        ("source_path", pa.string()),
        ("source_member", pa.string()),
        ("identity", pa.string()),
        ("crc32", pa.int64()),
        ("kept_path", pa.string()),
        ("kept_member", pa.string()),
    ]
)

#: One row per copy of a conflicting identity (``source_path`` null: the copy in the catalog).
CONFLICT_SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("source_path", pa.string()),
        ("source_member", pa.string()),
        ("crc32", pa.int64()),
    ]
)


@dataclass(frozen=True)
class PlanKind:
    """What the plan needs to know about a payload kind."""

    identity: str  # column naming an item across builds
    identity_label: str  # how messages call it
    item: str  # what one item is, in error names ("Instance" → DuplicateInstance)
    order: tuple[str, ...]  # sort keys of a task's rows (patient first)
    columns: tuple[str, ...]  # columns the pack task reads (written to the task files)


DICOM_PLAN = PlanKind(
    identity="sop_instance_uid",
    identity_label="SOPInstanceUID",
    item="Instance",
    order=(
        "patient_id", "study_instance_uid", "series_instance_uid", "instance_number",
        "sop_instance_uid", "path", "member",
    ),
    columns=(
        "path", "member", "size", "crc32", "sop_instance_uid", "series_instance_uid",
        "study_instance_uid", "patient_id", "modality", "instance_number",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class TaskPlan:
    """One pack task: its rows are in ``path`` (an Arrow IPC file)."""

    task_id: int
    path: str
    num_records: int
    raw_bytes: int
    carry: str | None = None  # patients already packed that this task rebuilds (text)


@dataclass
class BuildPlan:
    """What a build will do; every input row is in exactly one of tasks, scan_errors, duplicates."""

    tasks: list[TaskPlan]
    scan_errors: pa.Table  # ISSUE_SCHEMA, stage "scan"
    duplicates: pa.Table  # DUPLICATE_SCHEMA
    conflicts: pa.Table  # CONFLICT_SCHEMA
    other_issues: pa.Table = field(default_factory=ISSUE_SCHEMA.empty_table)  # e.g. "unpaired"

    @property
    def num_records(self) -> int:
        return sum(t.num_records for t in self.tasks)

    @property
    def raw_bytes(self) -> int:
        return sum(t.raw_bytes for t in self.tasks)


def _arange(n: int) -> pa.Array:
    return pa.array(range(n), pa.int64())


def dedupe(
    ok: pa.Table, identity: str, known: pa.Table | None
) -> tuple[pa.Array, pa.Table, pa.Table]:
    """(duplicate mask over ``ok``, duplicates, conflicts).

    ``ok`` is in (path, member) order: the first copy of an (identity, CRC-32) is kept, every
    later one is a duplicate of it; a copy in ``known`` (the catalog) comes before all of them.
    """
    n = ok.num_rows
    order = _arange(n)
    with_id = pc.is_valid(ok.column(identity))
    mine = pa.table(
        {
            "id": pc.filter(ok.column(identity), with_id),
            "crc32": pc.filter(ok.column("crc32"), with_id),
            "order": pc.filter(order, with_id),
        }
    )
    parts = [mine]
    if known is not None and known.num_rows:
        parts.append(
            pa.table(
                {
                    "id": known.column(0).cast(pa.string()),
                    "crc32": known.column(1).cast(pa.int64()),
                    "order": pa.array([-1] * known.num_rows, pa.int64()),
                }
            )
        )
    u = pa.concat_tables(parts).sort_by(
        [("id", "ascending"), ("crc32", "ascending"), ("order", "ascending")]
    )
    m = u.num_rows
    if m == 0:
        return (
            pa.array([False] * n, pa.bool_()),
            DUPLICATE_SCHEMA.empty_table(),
            CONFLICT_SCHEMA.empty_table(),
        )
    ids, crcs, orders = u.column("id"), u.column("crc32"), u.column("order")
    false = pa.array([False])
    same_id = pa.concat_arrays(
        [false, pc.equal(ids.slice(1), ids.slice(0, m - 1)).combine_chunks()]
    )
    same_crc = pa.concat_arrays(
        [false, pc.equal(crcs.slice(1), crcs.slice(0, m - 1)).combine_chunks()]
    )
    same_key = pc.and_(same_id, same_crc)
    first = pc.cumulative_max(pc.if_else(same_key, 0, _arange(m)))
    is_dup = pc.and_(same_key, pc.greater_equal(orders, 0))
    dup_orders = pc.filter(orders, is_dup)
    kept_orders = pc.filter(pc.take(orders, first), is_dup)
    from_catalog = pc.less(kept_orders, 0)
    safe_kept = pc.if_else(from_catalog, 0, kept_orders)
    duplicates = pa.table(
        {
            "source_path": pc.take(ok.column("path"), dup_orders),
            "source_member": pc.take(ok.column("member"), dup_orders),
            "identity": pc.filter(ids, is_dup),
            "crc32": pc.filter(crcs, is_dup),
            "kept_path": pc.if_else(
                from_catalog, pa.scalar(None, pa.string()), pc.take(ok.column("path"), safe_kept)
            ),
            "kept_member": pc.if_else(
                from_catalog, pa.scalar(None, pa.string()), pc.take(ok.column("member"), safe_kept)
            ),
        },
        schema=DUPLICATE_SCHEMA,
    )
    # conflicts: identities with more than one distinct CRC (kept copies only: one per CRC)
    heads = u.filter(pc.invert(same_key))
    counts = heads.group_by("id").aggregate([("crc32", "count")])
    bad = counts.filter(pc.greater(counts.column("crc32_count"), 1)).column("id")
    heads = heads.filter(pc.is_in(heads.column("id"), value_set=bad))
    from_cat = pc.less(heads.column("order"), 0)
    safe = pc.if_else(from_cat, 0, heads.column("order"))
    conflicts = pa.table(
        {
            "identity": heads.column("id"),
            "source_path": pc.if_else(
                from_cat, pa.scalar(None, pa.string()), pc.take(ok.column("path"), safe)
            ),
            "source_member": pc.if_else(
                from_cat, pa.scalar(None, pa.string()), pc.take(ok.column("member"), safe)
            ),
            "crc32": heads.column("crc32"),
        },
        schema=CONFLICT_SCHEMA,
    )
    mask = pc.is_in(order, value_set=dup_orders)
    return mask, duplicates, conflicts


def _assign(kept: pa.Table, num_tasks: int) -> pa.Array:
    """Task number of every row: whole patients, biggest first onto the lightest task."""
    patients = pc.fill_null(kept.column("patient_id"), "")
    sizes = (
        pa.table({"p": patients, "size": kept.column("size")})
        .group_by("p")
        .aggregate([("size", "sum")])
    )
    ordered = sizes.sort_by([("size_sum", "descending"), ("p", "ascending")])
    n = max(1, min(num_tasks, ordered.num_rows))
    heap = [(0, i) for i in range(n)]
    task_of: list[int] = []
    for size in ordered.column("size_sum").to_pylist():
        load, i = heapq.heappop(heap)
        task_of.append(i)
        heapq.heappush(heap, (load + (size or 0), i))
    lookup = pa.table({"p": ordered.column("p"), "task": pa.array(task_of, pa.int32())})
    joined = pa.table({"p": patients, "row": _arange(kept.num_rows)}).join(lookup, "p")
    joined = joined.sort_by("row")
    return joined.column("task").combine_chunks()


def plan_build(
    rows: pa.Table,
    kind: PlanKind,
    *,
    num_tasks: int,
    tasks_dir: str,
    known: pa.Table | None = None,
) -> BuildPlan:
    """Plan a build from scan rows (``status``, ``error`` and the kind's columns).

    ``known`` is a two-column table (identity, raw CRC-32) of the items already live in the
    catalog, so a rerun reports identical items as duplicates instead of packing them again.
    Task files are written under ``tasks_dir``. The plan owns ``rows``: pass a table nobody else
    holds and each step's copy replaces the previous one (the driver's memory per member stays
    about one plan row plus an index).
    """
    rows = rows.sort_by([("path", "ascending"), ("member", "ascending", "at_start")])
    status = rows.column("status")
    errs = rows.filter(pc.equal(status, "error"))
    scan_errors = pa.table(
        {
            "source_path": errs.column("path"),
            "source_member": errs.column("member"),
            "stage": pa.array(["scan"] * errs.num_rows, pa.string()),
            "error": errs.column("error"),
        },
        schema=ISSUE_SCHEMA,
    )
    ok = rows.filter(pc.equal(status, "ok")).select(list(kind.columns))
    del rows, status, errs
    dup_mask, duplicates, conflicts = dedupe(ok, kind.identity, known)
    kept = ok.filter(pc.invert(dup_mask))
    del ok, dup_mask
    tasks: list[TaskPlan] = []
    if kept.num_rows:
        task_of = _assign(kept, num_tasks)
        os.makedirs(tasks_dir, exist_ok=True)
        sort_keys = [(k, "ascending", "at_end") for k in kind.order]
        for i in range(int(pc.max(task_of).as_py()) + 1):
            part = kept.filter(pc.equal(task_of, i)).sort_by(sort_keys)
            if not part.num_rows:
                continue
            path = os.path.join(tasks_dir, f"task-{len(tasks):05d}.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, part.schema) as writer:
                writer.write_table(part)
            tasks.append(
                TaskPlan(len(tasks), path, part.num_rows, int(pc.sum(part["size"]).as_py()))
            )
            del part
    del kept
    pa.default_memory_pool().release_unused()  # give the plan's copies back to the system
    return BuildPlan(tasks, scan_errors, duplicates, conflicts)


def read_task(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A task file written by :func:`plan_build` (memory-mapped)."""
    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    return table if columns is None else table.select(list(columns))
