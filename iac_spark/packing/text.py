"""Clinical text on the build core: the plan of notes (and pairs) and their patient records.

* :data:`TEXT_PLAN`: notes are identified by ``doc_id`` and grouped by patient; a task's rows
  are sorted by (patient, ``doc_timestamp``, ``doc_id``).
* :func:`plan_pairs` (layout ``clinical_text_pair``): the source notes and the compressed
  ones (scanned with role ``compressed``) are joined on ``doc_id``. A note without a partner,
  on either side, is an ``unpaired`` issue and is not packed; nothing disappears silently.
* Record sources :func:`text_patients` / :func:`pair_patients`: one record per patient, the
  payload encoded by the adapters' own encoder (:mod:`.adapters`), the texts read back from the
  scan files (the notes are decoded once, by the scan). A patient already packed by an earlier
  build (``carry``) gets one new record with its old documents (read back from the old pack)
  and the new ones, so a reader always finds exactly one live record per patient.

Example:
    >>> TEXT_PLAN.identity, TEXT_PLAN.order[:3]
    ('doc_id', ('patient_id', 'doc_timestamp', 'doc_id'))
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from iatro.iac import VariableRecordPack

from ..errors import BuildError, location
from .adapters import (
    decode_pair_patient,
    decode_text_patient,
    encode_pair_patient,
    encode_text_patient,
    pair_doc,
    text_doc,
)
from .plan import (
    CONFLICT_SCHEMA,
    DUPLICATE_SCHEMA,
    ISSUE_SCHEMA,
    BuildPlan,
    PlanKind,
    TaskPlan,
    dedupe,
    plan_build,
    read_task,
)
from .task import PackTaskSpec, PatientRecords, Record, patient_runs

__all__ = [
    "CARRY_SCHEMA",
    "PAIR_PLAN",
    "TEXT_PLAN",
    "pair_patients",
    "plan_pairs",
    "text_patients",
    "write_carry",
]

_DOC_COLUMNS = (
    "path", "member", "size", "crc32", "institution", "patient_id", "encounter", "doc_type",
    "doc_timestamp", "doc_id", "encoding", "n_chars", "_file", "_row",
)  # fmt: skip

TEXT_PLAN = PlanKind(
    identity="doc_id",
    identity_label="doc_id",
    item="Document",
    order=("patient_id", "doc_timestamp", "doc_id", "path", "member"),
    columns=_DOC_COLUMNS,
)

#: Paired rows: the source note's columns plus where its compressed partner is.
PAIR_PLAN = PlanKind(
    identity="doc_id",
    identity_label="doc_id",
    item="Document",
    order=TEXT_PLAN.order,
    columns=(*_DOC_COLUMNS, "c_path", "c_member", "c_size", "_cfile", "_crow"),
)

#: Patients already packed whose record a build replaces: where the old record is and which
#: of its documents stay (live in the catalog and not re-ingested).
CARRY_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()),
        ("pack_id", pa.string()),
        ("pack_path", pa.string()),
        ("row", pa.int64()),
        ("keep", pa.list_(pa.string())),
    ]
)


def _issues(rows: pa.Table, stage: str, messages: Sequence[str]) -> pa.Table:
    return pa.table(
        {
            "source_path": rows.column("path"),
            "source_member": rows.column("member"),
            "stage": pa.array([stage] * rows.num_rows, pa.string()),
            "error": pa.array(list(messages), pa.string()),
        },
        schema=ISSUE_SCHEMA,
    )


def _firsts(rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(first row per doc_id in (path, member) order, the other rows)."""
    rows = rows.sort_by([("doc_id", "ascending"), ("path", "ascending"), ("member", "ascending")])
    ids = rows.column("doc_id").to_pylist()
    first = pa.array([i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))], pa.bool_())
    return rows.filter(first), rows.filter(pc.invert(first))


def plan_pairs(
    rows: pa.Table,
    roles: Sequence[str],
    *,
    num_tasks: int,
    tasks_dir: str,
    known: pa.Table | None = None,
) -> BuildPlan:
    """Plan a ``clinical_text_pair`` build: pair source and compressed notes on ``doc_id``."""
    role = pc.take(pa.array(list(roles), pa.string()), rows.column("_file"))
    ok = pc.fill_null(pc.equal(rows.column("status"), "ok"), False)
    is_src = pc.fill_null(pc.equal(role, "source"), False)
    errors = rows.filter(pc.invert(ok))
    scan_errors = _issues(errors, "scan", errors.column("error").to_pylist())
    src = rows.filter(pc.and_(ok, is_src)).select(list(_DOC_COLUMNS))
    comp = rows.filter(pc.and_(ok, pc.invert(is_src))).select(list(_DOC_COLUMNS))
    s_dup, s_dups, s_conf = dedupe(src, "doc_id", known)
    c_dup, c_dups, c_conf = dedupe(comp, "doc_id", None)
    src_first, src_more = _firsts(src.filter(pc.invert(s_dup)))
    comp_first, comp_more = _firsts(comp.filter(pc.invert(c_dup)))
    partner = comp_first.select(
        ["doc_id", "path", "member", "size", "_file", "_row"]
    ).rename_columns(["doc_id", "c_path", "c_member", "c_size", "_cfile", "_crow"])
    joined = src_first.join(partner, keys="doc_id", join_type="left outer")
    paired = joined.filter(pc.is_valid(joined.column("c_path")))
    lone_src = joined.filter(pc.is_null(joined.column("c_path")))
    lone_comp = comp_first.filter(
        pc.invert(pc.is_in(comp_first.column("doc_id"), value_set=src_first.column("doc_id")))
    )

    def texts(t: pa.Table, why: str) -> list[str]:
        return [
            f"UnpairedDocument: {location(p, m)} (doc_id {d}) {why}; not packed"
            for p, m, d in zip(
                t.column("path").to_pylist(),
                t.column("member").to_pylist(),
                t.column("doc_id").to_pylist(),
                strict=True,
            )
        ]

    unpaired = pa.concat_tables(
        [
            _issues(lone_src, "unpaired", texts(lone_src, "has no compressed partner")),
            _issues(lone_comp, "unpaired", texts(lone_comp, "is a compressed note without a source note")),
            _issues(src_more, "unpaired", texts(src_more, "is another source copy with different bytes; only the first copy is paired")),
            _issues(comp_more, "unpaired", texts(comp_more, "is another compressed copy with different bytes; only the first copy is paired")),
        ]
    )  # fmt: skip
    plan = plan_build(
        paired.select(list(PAIR_PLAN.columns))
        .append_column("status", pa.array(["ok"] * paired.num_rows, pa.string()))
        .append_column("error", pa.nulls(paired.num_rows, pa.string())),
        PAIR_PLAN,
        num_tasks=num_tasks,
        tasks_dir=tasks_dir,
    )
    plan.scan_errors = scan_errors
    plan.other_issues = unpaired
    plan.duplicates = pa.concat_tables([s_dups, c_dups]).cast(DUPLICATE_SCHEMA)
    plan.conflicts = pa.concat_tables([s_conf, c_conf]).cast(CONFLICT_SCHEMA)
    return plan


def write_carry(plan: BuildPlan, carry: pa.Table | None) -> None:
    """Give each task the carried (already packed) patients it rebuilds: ``task-NNNNN.carry.arrow``."""
    if carry is None or not carry.num_rows:
        return
    for i, t in enumerate(plan.tasks):
        patients = pc.unique(read_task(t.path, ["patient_id"]).column("patient_id"))
        mine = carry.filter(pc.is_in(carry.column("patient_id"), value_set=patients))
        if not mine.num_rows:
            continue
        path = t.path.replace(".arrow", ".carry.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, CARRY_SCHEMA) as writer:
            writer.write_table(mine.cast(CARRY_SCHEMA))
        plan.tasks[i] = TaskPlan(t.task_id, t.path, t.num_records, t.raw_bytes, carry=path)


def _take_text(rows: pa.Table, scan_files: Sequence[str], fcol: str, rcol: str) -> list[str]:
    """The ``text`` of each row, read from the scan files (one memory-mapped read per file)."""
    out: list[Any] = [None] * rows.num_rows
    by_file: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, (f, r) in enumerate(
        zip(rows.column(fcol).to_pylist(), rows.column(rcol).to_pylist(), strict=True)
    ):
        by_file[f].append((i, r))
    for f, items in by_file.items():
        column = pa.ipc.open_file(pa.memory_map(scan_files[f])).read_all().column("text")
        values = column.take(pa.array([r for _, r in items], pa.int64())).to_pylist()
        for (i, _), v in zip(items, values, strict=True):
            out[i] = v
    return out


def _carried(spec: PackTaskSpec) -> dict[str, tuple[str, int, frozenset[str]]]:
    if not spec.task.carry or not os.path.exists(spec.task.carry):
        return {}
    t = read_task(spec.task.carry)
    return {
        p: (path, int(row), frozenset(keep or ()))
        for p, path, row, keep in zip(
            t.column("patient_id").to_pylist(),
            t.column("pack_path").to_pylist(),
            t.column("row").to_pylist(),
            t.column("keep").to_pylist(),
            strict=True,
        )
    }


def _old_record(path: str, row: int, patient: str) -> bytes:
    try:
        pack = VariableRecordPack(path)
        try:
            return bytes(pack.read(row))
        finally:
            pack.close()
    except Exception as exc:  # the old documents must never be dropped silently
        raise BuildError(
            f"cannot read patient {patient}'s current record ({path} row {row}) to add new "
            f"documents to it: {type(exc).__name__}: {exc}"
        ) from exc


def _doc_fields(rows: pa.Table) -> list[dict[str, Any]]:
    return rows.select(
        ["path", "member", "institution", "patient_id", "encounter", "doc_type", "doc_timestamp",
         "doc_id"]
    ).to_pylist()  # fmt: skip


def _patients(rows: pa.Table, spec: PackTaskSpec, *, paired: bool) -> Iterator[PatientRecords]:
    """One record per patient: its new notes (and partners), plus the carried old ones."""
    texts = _take_text(rows, spec.scan_files, "_file", "_row")
    partners = _take_text(rows, spec.scan_files, "_cfile", "_crow") if paired else None
    c_paths = rows.column("c_path").to_pylist() if paired else []
    fields = _doc_fields(rows)
    carry = _carried(spec)
    decode = decode_pair_patient if paired else decode_text_patient
    for start, stop, planned in patient_runs(rows):
        new = fields[start:stop]
        pid = new[0]["patient_id"]
        docs: list[Any] = []
        for k, f in enumerate(new):
            meta = {"encounter": f["encounter"], "source": location(f["path"], f["member"]),
                    "doc_timestamp": f["doc_timestamp"]}  # fmt: skip
            if partners is not None:
                docs.append(pair_doc(f["doc_id"], texts[start + k], partners[start + k],
                                     f["doc_type"], **meta))  # fmt: skip
            else:
                docs.append(text_doc(f["doc_id"], texts[start + k], f["doc_type"], **meta))
        institution = next((f["institution"] for f in new if f["institution"]), "")
        if pid in carry:
            path, row, keep = carry[pid]
            old = decode(_old_record(path, row, pid))
            fresh = {d.doc_id for d in docs}
            docs += [d for d in old.docs if d.doc_id in keep and d.doc_id not in fresh]
            docs.sort(key=lambda d: (d.doc_timestamp, d.doc_id))
            institution = institution or old.institution
        members = tuple(f["path"] for f in new) + tuple(c_paths[start:stop])
        if paired:
            payload = encode_pair_patient(pid, institution, docs)
            values: tuple[Any, ...] = (
                pid, institution, len(docs),
                sum(len(d.source_text.encode("utf-8")) for d in docs),
                sum(len(d.compressed_text.encode("utf-8")) for d in docs), len(payload),
            )  # fmt: skip
        else:
            payload = encode_text_patient(pid, institution, docs)
            values = (pid, institution, len(docs), len(payload))
        yield planned, iter([Record(values, payload, members)])


def text_patients(rows: pa.Table, spec: PackTaskSpec) -> Iterator[PatientRecords]:
    """``clinical_text``: one record per patient, old documents carried into it."""
    return _patients(rows, spec, paired=False)


def pair_patients(rows: pa.Table, spec: PackTaskSpec) -> Iterator[PatientRecords]:
    """``clinical_text_pair``: one record per patient of (source, compressed) documents."""
    return _patients(rows, spec, paired=True)
