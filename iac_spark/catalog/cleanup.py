"""``vacuum``: remove pack files the catalog does not reference, and stale build staging.

The catalog is the source of truth (DESIGN.md "Packs"): a file under ``OUT/packs/``
(``*.iac`` or a leftover ``*.iac.tmp``) that no committed ``packs`` row references is
garbage — the output of a build that failed or crashed before its commit point. A
*running* build, however, publishes its packs a little before it commits them, and
keeps segments under ``OUT/_staging/<run_id>/`` while it runs. The rules:

* an unreferenced pack file is removed when its run (the pack id ``<run_id>-NNNN``) is
  recorded as failed or committed in ``runs``, or when it is older than
  ``pack_grace_seconds`` (age = now − max(mtime, ctime): publishing renames a segment,
  which updates its ctime);
* ``OUT/_staging/<run_id>`` is removed when that run is recorded in ``runs`` (committed or
  failed: ``build_packs`` has returned, so nobody writes there any more) or when nothing
  in it was modified for ``staging_grace_seconds``; otherwise it is kept and listed;
* catalog tables are never touched (use ``deltalake.DeltaTable.vacuum`` for old Delta
  file versions, keeping the ``runs`` history you want ``as_of`` to reach).

Keep both grace periods longer than your longest build step (default: one hour).
``dry_run=True`` lists what would go and deletes nothing.

Example:
    >>> print(vacuum("demo_out", dry_run=True))                     # doctest: +SKIP
    vacuum /data/demo_out (dry run): 1 orphan pack(s), 0 stale staging dir(s), 12.0 MB; 0 kept (within the grace period)
      - packs/demo/20261122T210000Z-3f2a9c1d-0000.iac
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

from .rows import pack_abspath
from .snapshot import Snapshot
from .store import CatalogStore, DeltaRsStore

__all__ = ["VacuumReport", "vacuum"]


@dataclass
class VacuumReport:
    """What :func:`vacuum` removed (or would remove, with ``dry_run``) and what it kept."""

    out: str
    dry_run: bool
    orphan_packs: list[str] = field(default_factory=list)  # absolute paths
    stale_staging: list[str] = field(default_factory=list)  # absolute paths
    #: unreferenced but within the grace period (maybe a running build's)
    kept: list[str] = field(default_factory=list)
    bytes_freed: int = 0

    @property
    def removed(self) -> list[str]:
        """Everything removed (or that would be, in a dry run)."""
        return [*self.orphan_packs, *self.stale_staging]

    def __str__(self) -> str:
        rel = lambda p: os.path.relpath(p, self.out)  # noqa: E731
        lines = [
            f"vacuum {self.out}{' (dry run)' if self.dry_run else ''}: {len(self.orphan_packs)} orphan pack(s), "
            f"{len(self.stale_staging)} stale staging dir(s), {self.bytes_freed / 1024**2:.1f} MB; "
            f"{len(self.kept)} kept (within the grace period)"
        ]
        lines += [f"  - {rel(p)}" for p in self.removed]
        lines += [f"  = {rel(p)} (kept)" for p in self.kept]
        return "\n".join(lines)


def _age(path: str, now: float) -> float:
    st = os.stat(path)
    return now - max(st.st_mtime, st.st_ctime)


def _newest_mtime(root: str) -> float:
    newest = os.stat(root).st_mtime
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                continue
    return newest


def _tree_bytes(root: str) -> int:
    total = 0
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                continue
    return total


def _run_of_pack(filename: str) -> str:
    """``<run_id>-NNNN.iac[.tmp]`` → ``<run_id>``."""
    stem = filename.split(".iac", 1)[0]
    return stem.rsplit("-", 1)[0]


def vacuum(
    out: str,
    *,
    dry_run: bool = False,
    staging_grace_seconds: float = 3600.0,
    pack_grace_seconds: float = 3600.0,
    store: CatalogStore | None = None,
) -> VacuumReport:
    """Remove unreferenced pack files and stale staging under ``out`` (see the module rules)."""
    out = os.path.abspath(out)
    store = store or DeltaRsStore(out)
    report = VacuumReport(out=out, dry_run=dry_run)
    if store.exists():
        snap = Snapshot.load(store)
        referenced = {
            os.path.normpath(pack_abspath(out, p))
            for p in snap.table("packs", columns=["path"]).column("path").to_pylist()
        }
        recorded = dict(
            zip(
                snap.all_runs.column("run_id").to_pylist(),
                snap.all_runs.column("status").to_pylist(),
                strict=True,
            )
        )
    else:
        referenced, recorded = set(), {}
    now = time.time()
    packs_root = os.path.join(out, "packs")
    for dirpath, _dirs, filenames in os.walk(packs_root):
        for name in sorted(filenames):
            if not (name.endswith(".iac") or name.endswith(".iac.tmp")):
                continue
            path = os.path.normpath(os.path.join(dirpath, name))
            if path in referenced:
                continue
            status = recorded.get(_run_of_pack(name))
            try:
                old = _age(path, now) > pack_grace_seconds
            except OSError:
                continue
            if status is None and not old:
                report.kept.append(path)
                continue
            report.orphan_packs.append(path)
            report.bytes_freed += os.path.getsize(path)
            if not dry_run:
                os.remove(path)
    staging_root = os.path.join(out, "_staging")
    if os.path.isdir(staging_root):
        for entry in sorted(os.scandir(staging_root), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            finished = recorded.get(entry.name) is not None
            stale = now - _newest_mtime(entry.path) > staging_grace_seconds
            if not (finished or stale):
                report.kept.append(entry.path)
                continue
            report.stale_staging.append(entry.path)
            report.bytes_freed += _tree_bytes(entry.path)
            if not dry_run:
                shutil.rmtree(entry.path, ignore_errors=True)
    return report
