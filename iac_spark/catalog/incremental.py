"""Decide what a build must (re)ingest, and which instances the catalog already holds.

* :func:`plan_sources` compares each input file's :func:`~.fingerprint.fingerprint`
  with the live (committed, not superseded) ``sources`` rows of its path: no row →
  *new*; a row with the same fingerprint → *unchanged* (skipped: reruns are
  idempotent); rows with other fingerprints only → *changed* (re-ingested; its old
  rows are retired when the new build commits).
* :func:`known_uids` gives SOPInstanceUID → raw CRC-32s of the live records, minus the
  records of sources being re-ingested, for ``build_packs(known=...)``: an instance
  already catalogued from another source becomes a ``duplicate`` error row instead of
  being packed twice.

Files that disappeared from the inputs are not retired (a build only sees what it is
given); a source whose every member failed has ``status = 'failed'`` and is retried
only with ``retry_failed=True`` or once the file changes.

Example:
    >>> import tempfile, zipfile, os
    >>> from iac_spark.inputs.discover import discover
    >>> d = tempfile.mkdtemp(); z = os.path.join(d, "a.zip")
    >>> with zipfile.ZipFile(z, "w") as zf:
    ...     zf.writestr("x.dcm", b"x")
    >>> plan = plan_sources(os.path.join(d, "out"), discover([z]))
    >>> len(plan.new), len(plan.changed), len(plan.unchanged)
    (1, 0, 0)
    >>> known_uids(os.path.join(d, "out"))
    {}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ..inputs.discover import InputFile
from .fingerprint import fingerprint
from .rows import INGESTED
from .snapshot import Snapshot
from .store import CatalogStore, DeltaRsStore

__all__ = ["SourcePlan", "known_uids", "plan_sources"]


@dataclass(frozen=True)
class SourcePlan:
    """Input files split by what the catalog knows about them; fingerprints computed once."""

    new: list[InputFile]
    changed: list[InputFile]
    unchanged: list[InputFile]
    fingerprints: dict[str, str] = field(default_factory=dict, repr=False)
    catalog_version: int | None = None  # runs version the plan was made against (None: no catalog)

    @property
    def to_ingest(self) -> list[InputFile]:
        """New then changed files."""
        return [*self.new, *self.changed]

    @property
    def retire_paths(self) -> list[str]:
        """Paths whose older catalog rows the next commit retires."""
        return [f.path for f in self.changed]


def _store(out: str, store: CatalogStore | None) -> CatalogStore:
    return store or DeltaRsStore(out)


def plan_sources(
    out: str,
    files: Sequence[InputFile],
    *,
    retry_failed: bool = False,
    store: CatalogStore | None = None,
) -> SourcePlan:
    """Split ``files`` into new / changed / unchanged against the committed catalog of ``out``."""
    store = _store(out, store)
    fingerprints = {f.path: fingerprint(f) for f in files}
    if not store.exists():
        return SourcePlan(list(files), [], [], fingerprints, None)
    snap = Snapshot.load(store)
    live = snap.table("sources", columns=["source_path", "fingerprint", "status", "superseded"])
    live = live.filter(pc.invert(live.column("superseded")))
    seen: dict[str, list[tuple[str, str]]] = {}
    for r in live.to_pylist():
        seen.setdefault(r["source_path"], []).append((r["fingerprint"], r["status"]))
    new, changed, unchanged = [], [], []
    for f in files:
        rows = seen.get(f.path)
        if not rows:
            new.append(f)
        elif any(
            fp == fingerprints[f.path] and (status == INGESTED or not retry_failed)
            for fp, status in rows
        ):
            unchanged.append(f)
        else:
            changed.append(f)
    return SourcePlan(new, changed, unchanged, fingerprints, snap.version)


def known_uids(
    out: str,
    *,
    exclude_paths: Iterable[str] = (),
    store: CatalogStore | None = None,
) -> dict[str, set[int]]:
    """SOPInstanceUID → raw CRC-32s of the live (committed, not retired) records.

    Records whose ``source_path`` is in ``exclude_paths`` (sources being re-ingested) are
    left out, so their instances are packed again rather than reported as duplicates.
    """
    store = _store(out, store)
    if not store.exists():
        return {}
    snap = Snapshot.load(store)
    recs = snap.table(
        "records", columns=["sop_instance_uid", "raw_crc32", "source_path", "retired"]
    )
    keep = pc.invert(recs.column("retired"))
    excluded = sorted({os.path.abspath(p) for p in exclude_paths})
    if excluded:
        in_excluded = pc.fill_null(
            pc.is_in(recs.column("source_path"), pa.array(excluded, pa.string())), False
        )
        keep = pc.and_(keep, pc.invert(in_excluded))
    recs = recs.filter(keep)
    out_map: dict[str, set[int]] = {}
    for uid, crc in zip(
        recs.column("sop_instance_uid").to_pylist(),
        recs.column("raw_crc32").to_pylist(),
        strict=True,
    ):
        if uid is not None and crc is not None:
            out_map.setdefault(uid, set()).add(int(crc))
    return out_map
