"""Driver-side build plan over the header-only scan: errors, duplicates, patients → tasks.

The plan never touches member bytes. It decides, from the ``zipdcm`` metadata rows:

* which rows are errors (not packed, reported with their reason);
* which are duplicates (same SOPInstanceUID and same CRC-32 as a kept record, within
  this build or already in the catalog: packed once, reported) and which are
  conflicts (same UID, different bytes: all kept, reported);
* how whole patients are grouped into tasks, balanced by bytes (longest first onto
  the least-loaded task), with each task's records sorted by
  (patient, study, series, instance number).

Example:
    >>> rows = [
    ...     {"path": "/a.zip", "member": "1.dcm", "size": 10, "crc32": 1, "sop_instance_uid": "1.1",
    ...      "series_instance_uid": "s", "study_instance_uid": "t", "patient_id": "P1",
    ...      "modality": "CT", "instance_number": 1, "error": None},
    ...     {"path": "/b.zip", "member": "1.dcm", "size": 10, "crc32": 1, "sop_instance_uid": "1.1",
    ...      "series_instance_uid": "s", "study_instance_uid": "t", "patient_id": "P1",
    ...      "modality": "CT", "instance_number": 1, "error": None},
    ... ]
    >>> plan = plan_build(rows, num_tasks=2)
    >>> len(plan.tasks), len(plan.duplicates), plan.tasks[0][0].path
    (1, 1, '/a.zip')
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PLAN_COLUMNS",
    "BuildPlan",
    "Conflict",
    "Duplicate",
    "ErrorRecord",
    "RecordRef",
    "plan_build",
]

#: The scan columns the plan needs (no ``meta``, no ``content``: the bytes move once, in the tasks).
PLAN_COLUMNS = (
    "path", "member", "size", "crc32", "sop_instance_uid", "series_instance_uid",
    "study_instance_uid", "patient_id", "modality", "instance_number", "error",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordRef:
    """One member to pack: where its bytes are and the index columns it gets."""

    path: str
    member: str | None
    size: int
    crc32: int
    sop_instance_uid: str | None
    series_instance_uid: str | None
    study_instance_uid: str | None
    patient_id: str | None
    modality: str | None
    instance_number: int | None

    def sort_key(self) -> tuple[Any, ...]:
        inst = self.instance_number
        return (
            self.patient_id or "", self.study_instance_uid or "", self.series_instance_uid or "",
            inst is None, inst if inst is not None else 0, self.sop_instance_uid or "",
            self.path, self.member or "",
        )  # fmt: skip

    def to_list(self) -> list[Any]:
        return [getattr(self, f) for f in self.__slots__]

    @classmethod
    def from_list(cls, values: list[Any]) -> RecordRef:
        return cls(*values)


@dataclass(frozen=True)
class ErrorRecord:
    """A member that is not packed, with the stage that rejected it (``scan`` or ``pack``)."""

    source_path: str
    source_member: str | None
    stage: str
    error: str


@dataclass(frozen=True)
class Duplicate:
    """``path``/``member`` holds the same instance (UID and CRC-32) as ``kept_path``/``kept_member``."""

    sop_instance_uid: str
    path: str
    member: str | None
    kept_path: str | None
    kept_member: str | None


@dataclass(frozen=True)
class Conflict:
    """Several members share a SOPInstanceUID with different bytes; all of them are packed."""

    sop_instance_uid: str
    members: tuple[tuple[str, str | None, int], ...]  # (path, member, crc32)


@dataclass
class BuildPlan:
    """What a build will do; ``tasks`` hold whole patients, each task sorted."""

    tasks: list[list[RecordRef]]
    errors: list[ErrorRecord] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def num_records(self) -> int:
        return sum(len(t) for t in self.tasks)

    @property
    def raw_bytes(self) -> int:
        return sum(r.size for t in self.tasks for r in t)


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def plan_build(
    rows: Iterable[Any],
    *,
    num_tasks: int,
    known: Mapping[str, Iterable[int]] | None = None,
) -> BuildPlan:
    """Plan a build from scan rows (mappings or Spark Rows with :data:`PLAN_COLUMNS`).

    ``known`` maps SOPInstanceUIDs already in the catalog to their CRC-32s, so a rerun
    reports identical instances as duplicates instead of packing them again.
    """
    errors: list[ErrorRecord] = []
    duplicates: list[Duplicate] = []
    kept: dict[str, dict[int, tuple[str | None, str | None]]] = {}
    for uid, crcs in (known or {}).items():
        kept[uid] = {int(c): (None, None) for c in crcs}
    records: list[RecordRef] = []
    ordered = sorted(rows, key=lambda r: (_get(r, "path"), _get(r, "member") or ""))
    for row in ordered:
        path, member = _get(row, "path"), _get(row, "member")
        if _get(row, "error") is not None:
            errors.append(ErrorRecord(path, member, "scan", _get(row, "error")))
            continue
        ref = RecordRef(
            path, member, int(_get(row, "size")), int(_get(row, "crc32")),
            *(_get(row, c) for c in PLAN_COLUMNS[4:10]),
        )  # fmt: skip
        if ref.sop_instance_uid is not None:
            uid = ref.sop_instance_uid
            seen = kept.setdefault(uid, {})
            if ref.crc32 in seen:
                kp, km = seen[ref.crc32]
                duplicates.append(Duplicate(uid, path, member, kp, km))
                continue
            seen[ref.crc32] = (path, member)
        records.append(ref)
    conflicts = _conflicts(records, kept)
    return BuildPlan(_assign(records, num_tasks), errors, duplicates, conflicts)


def _conflicts(
    records: list[RecordRef], kept: dict[str, dict[int, tuple[str | None, str | None]]]
) -> list[Conflict]:
    out = []
    for uid, by_crc in kept.items():
        if len(by_crc) > 1:
            out.append(
                Conflict(
                    uid, tuple(sorted((p or "<catalog>", m, c) for c, (p, m) in by_crc.items()))
                )
            )
    return sorted(out, key=lambda c: c.sop_instance_uid)


def _assign(records: list[RecordRef], num_tasks: int) -> list[list[RecordRef]]:
    """Whole patients onto at most ``num_tasks`` tasks, biggest patient first onto the lightest task."""
    by_patient: dict[str, list[RecordRef]] = {}
    for r in records:
        by_patient.setdefault(r.patient_id or "", []).append(r)
    n = max(1, min(num_tasks, len(by_patient)))
    heap = [(0, i) for i in range(n)]
    tasks: list[list[RecordRef]] = [[] for _ in range(n)]
    for _pid, recs in sorted(
        by_patient.items(), key=lambda kv: (-sum(r.size for r in kv[1]), kv[0])
    ):
        load, i = heapq.heappop(heap)
        tasks[i].extend(recs)
        heapq.heappush(heap, (load + sum(r.size for r in recs), i))
    for t in tasks:
        t.sort(key=RecordRef.sort_key)
    return [t for t in tasks if t]
