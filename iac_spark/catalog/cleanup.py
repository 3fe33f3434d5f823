"""``vacuum``: remove what no committed run references — orphan packs, stale staging, dead runs' rows.

The catalog is the source of truth (DESIGN.md "Packs"): a file under ``OUT/packs/``
(``*.iac`` or a leftover ``*.iac.tmp``) that no committed ``packs`` row references is
garbage — the output of a build that failed or was killed before its commit point. A
*running* build, however, publishes its packs a little before it commits them, keeps its
files under ``OUT/_staging/<run_id>/`` while it runs, and appends its catalog rows just
before its ``runs`` row. One rule decides, per run (``retention_hours``, default 1):

* a run recorded in ``runs`` (committed or failed) has finished: its staging goes, and so
  does any pack file of it the catalog does not reference;
* a run *not* recorded in ``runs`` is **live** while anything of it — its staging tree, its
  pack files, or (with neither left) the start time in its run id — is younger than
  ``retention_hours``; everything of a live run is kept and listed. Otherwise it is **dead**
  (killed, or its machine lost) and everything of it goes;
* the catalog rows of runs that never committed (dead or failed) are deleted from
  ``records``, ``documents``, ``sources``, ``errors`` and ``packs``, and retirement flags they
  set on other rows are cleared. Readers never saw those rows (the committed views hide
  them); deleting them keeps the raw tables, which other engines may read directly, free of
  dangling rows. Committed rows are never touched, nor Delta's file versions (use
  ``deltalake.DeltaTable.vacuum`` for those, keeping the ``runs`` history ``as_of`` needs).

Keep ``retention_hours`` longer than your longest build; ``retention_hours=0`` removes every
leftover the catalog does not reference — only when no build is running into ``out``.
``dry_run=True`` lists what would go and deletes nothing.

Example:
    >>> print(vacuum("demo_out", dry_run=True))                     # doctest: +SKIP
    vacuum /data/demo_out (dry run): 1 orphan pack(s), 0 stale staging dir(s), 1 dead run(s) with 240 catalog row(s), 12.0 MB; 0 kept (younger than 1 h)
      - packs/demo/20261122T210000123456Z-3f2a9c1d-0000.iac
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import OptionError
from ..inputs.discover import normalize_path
from .rows import pack_abspath
from .schema import TableName
from .snapshot import Snapshot
from .store import CatalogStore, DeltaRsStore, sql_list
from .views import COMMITTED, RETIRE_COLUMNS

__all__ = ["DEFAULT_RETENTION_HOURS", "VacuumReport", "vacuum"]

#: How long an unrecorded run's files and rows are kept after their last change.
DEFAULT_RETENTION_HOURS = 1.0

#: Tables whose rows carry the run that wrote them (``runs`` is the commit point, kept).
_RUN_TABLES: tuple[TableName, ...] = ("records", "documents", "sources", "errors", "packs")

#: Tables whose retirement flags name the run that set them.
_FLAGGED: tuple[TableName, ...] = ("records", "documents", "sources")

_RUN_TIME = re.compile(r"^(\d{8}T\d{6})(\d{6})?Z-")


@dataclass
class VacuumReport:
    """What :func:`vacuum` removed (or would remove, with ``dry_run``) and what it kept."""

    out: str
    dry_run: bool
    retention_hours: float = DEFAULT_RETENTION_HOURS
    orphan_packs: list[str] = field(default_factory=list)  # absolute paths
    stale_staging: list[str] = field(default_factory=list)  # absolute paths
    #: runs that never committed whose catalog rows were deleted (failed or dead)
    dead_runs: list[str] = field(default_factory=list)
    dead_rows: dict[str, int] = field(default_factory=dict)  # per table
    flags_cleared: int = 0  # retirement flags set by those runs, cleared
    #: unreferenced but younger than the retention (maybe a running build's)
    kept: list[str] = field(default_factory=list)
    bytes_freed: int = 0

    @property
    def removed(self) -> list[str]:
        """Every file or folder removed (or that would be, in a dry run)."""
        return [*self.orphan_packs, *self.stale_staging]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.removed or self.dead_runs or self.flags_cleared)

    def __str__(self) -> str:
        rel = lambda p: os.path.relpath(p, self.out)  # noqa: E731
        head = f"vacuum {self.out}{' (dry run)' if self.dry_run else ''}: "
        kept = f"{len(self.kept)} kept (younger than {self.retention_hours:g} h)"
        if self.nothing_to_do:
            lines = [head + f"nothing to remove; {kept}"]
        else:
            lines = [
                head + f"{len(self.orphan_packs)} orphan pack(s), "
                f"{len(self.stale_staging)} stale staging dir(s), {len(self.dead_runs)} dead "
                f"run(s) with {sum(self.dead_rows.values())} catalog row(s) and "
                f"{self.flags_cleared} flag(s), {self.bytes_freed / 1024**2:.1f} MB; {kept}"
            ]
        lines += [f"  - {rel(p)}" for p in self.removed]
        lines += [f"  - catalog rows of run {r}" for r in self.dead_runs]
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


def _run_started(run_id: str) -> float | None:
    """The start time a run id carries (``<UTC time>-<hex>``), as a timestamp, if it has one."""
    m = _RUN_TIME.match(run_id)
    if m is None:
        return None
    when = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return when.timestamp() + int(m.group(2) or 0) / 1e6


def _catalog_runs(snap: Snapshot) -> set[str]:
    """Every run id with rows in the raw tables (committed or not)."""
    ref = snap.session.dialect.ref
    union = " UNION ".join(f"SELECT DISTINCT run_id FROM {ref(n)}" for n in _RUN_TABLES)
    found = snap.session.execute(f"SELECT DISTINCT run_id FROM ({union}) u").column("run_id")
    return {r for r in found.to_pylist() if r is not None}


def _flagged_by(snap: Snapshot, runs: list[str]) -> dict[TableName, int]:
    """Rows whose retirement flag was set by one of ``runs``, per table."""
    ref = snap.session.dialect.ref
    out: dict[TableName, int] = {}
    for name in _FLAGGED:
        by = RETIRE_COLUMNS[name][1]
        n = snap.session.execute(
            f"SELECT count(*) AS n FROM {ref(name)} WHERE {by} IN {sql_list(runs)}"
        ).column("n")[0]
        if n.as_py():
            out[name] = int(n.as_py())
    return out


def _rows_of(snap: Snapshot, runs: list[str]) -> dict[TableName, int]:
    ref = snap.session.dialect.ref
    out: dict[TableName, int] = {}
    for name in _RUN_TABLES:
        n = snap.session.execute(
            f"SELECT count(*) AS n FROM {ref(name)} WHERE run_id IN {sql_list(runs)}"
        ).column("n")[0]
        if n.as_py():
            out[name] = int(n.as_py())
    return out


def vacuum(
    out: str,
    *,
    retention_hours: float = DEFAULT_RETENTION_HOURS,
    dry_run: bool = False,
    store: CatalogStore | None = None,
) -> VacuumReport:
    """Remove what no committed run of ``out`` references (see the module rules).

    ``retention_hours`` (default 1): a run not recorded in ``runs`` is kept, files and rows,
    while anything of it is younger than that, in case its build still runs; ``0`` removes
    every leftover (use it only when no build runs into ``out``). Raises
    :class:`~iac_spark.errors.OptionError` for a negative or non-finite retention.
    """
    if (
        isinstance(retention_hours, bool)
        or not isinstance(retention_hours, (int, float))
        or not math.isfinite(retention_hours)
        or retention_hours < 0
    ):
        raise OptionError(f"retention_hours must be a number >= 0, got {retention_hours!r}")
    retention = float(retention_hours) * 3600.0
    out = normalize_path(out)
    store = store or DeltaRsStore(out)
    report = VacuumReport(out=out, dry_run=dry_run, retention_hours=float(retention_hours))
    snap = Snapshot.load(store) if store.exists() else None
    referenced: set[str] = set()
    recorded: dict[str, str] = {}
    if snap is not None:
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
    now = time.time()

    # what each unrecorded run left, and how recently it changed
    orphans: dict[str, list[str]] = {}
    for dirpath, _dirs, filenames in os.walk(os.path.join(out, "packs")):
        for name in sorted(filenames):
            if not (name.endswith(".iac") or name.endswith(".iac.tmp")):
                continue
            path = os.path.normpath(os.path.join(dirpath, name))
            if path not in referenced:
                orphans.setdefault(_run_of_pack(name), []).append(path)
    staging_root = os.path.join(out, "_staging")
    staging: dict[str, str] = {}
    if os.path.isdir(staging_root):
        staging = {e.name: e.path for e in os.scandir(staging_root) if e.is_dir()}
    in_catalog = _catalog_runs(snap) if snap is not None else set()
    youngest: dict[str, float] = {}
    for run, d in staging.items():
        try:
            youngest[run] = now - _newest_mtime(d)
        except OSError:
            continue
    for run, paths in orphans.items():
        for p in paths:
            try:
                youngest[run] = min(youngest.get(run, math.inf), _age(p, now))
            except OSError:
                continue
    for run in in_catalog - set(youngest):  # rows only: the run id's start time is the evidence
        started = _run_started(run)
        youngest[run] = math.inf if started is None else now - started

    def live(run: str) -> bool:
        return run not in recorded and youngest.get(run, math.inf) < retention

    for run in sorted(orphans):
        for path in orphans[run]:
            if live(run):
                report.kept.append(path)
                continue
            try:
                size = os.path.getsize(path)
                if not dry_run:
                    os.remove(path)
            except FileNotFoundError:
                continue
            report.orphan_packs.append(path)
            report.bytes_freed += size
    for run in sorted(staging):
        path = staging[run]
        if live(run):
            report.kept.append(path)
            continue
        report.stale_staging.append(path)
        report.bytes_freed += _tree_bytes(path)
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
    if not dry_run:
        with contextlib.suppress(OSError):
            os.rmdir(staging_root)  # only if no build uses it

    if snap is not None:
        never = sorted(
            r for r in (in_catalog | set(recorded)) if recorded.get(r) != COMMITTED and not live(r)
        )
        if never:
            rows = _rows_of(snap, never)
            flags = _flagged_by(snap, never)
            report.dead_runs = sorted(
                {*_runs_in(snap, never, rows), *_runs_flagging(snap, never, flags)}
            )
            report.dead_rows = {k: v for k, v in rows.items()}
            report.flags_cleared = sum(flags.values())
            if not dry_run and report.dead_runs:
                dead = report.dead_runs
                for name in rows:
                    store.delete(name, predicate=f"run_id IN {sql_list(dead)}")
                for name in flags:
                    flag, by = RETIRE_COLUMNS[name]
                    store.update(
                        name,
                        predicate=f"{by} IN {sql_list(dead)}",
                        updates={flag: "false", by: "NULL"},
                    )
    return report


def _runs_in(snap: Snapshot, runs: list[str], rows: dict[TableName, int]) -> set[str]:
    """Which of ``runs`` have rows in the tables of ``rows``."""
    if not rows:
        return set()
    ref = snap.session.dialect.ref
    union = " UNION ".join(
        f"SELECT DISTINCT run_id FROM {ref(n)} WHERE run_id IN {sql_list(runs)}" for n in rows
    )
    return set(snap.session.execute(union).column("run_id").to_pylist())


def _runs_flagging(snap: Snapshot, runs: list[str], flags: dict[TableName, int]) -> set[str]:
    """Which of ``runs`` set retirement flags in the tables of ``flags``."""
    if not flags:
        return set()
    ref = snap.session.dialect.ref
    union = " UNION ".join(
        f"SELECT DISTINCT {RETIRE_COLUMNS[n][1]} AS run_id FROM {ref(n)} "
        f"WHERE {RETIRE_COLUMNS[n][1]} IN {sql_list(runs)}"
        for n in flags
    )
    return set(snap.session.execute(union).column("run_id").to_pylist())
