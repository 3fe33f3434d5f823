"""Killed drivers and racing builds: the next build heals, one copy of every input stays live.

Kills (issue 11, 4b): a build runs in a subprocess whose script — the test's, never the
product's — wraps one product function and SIGKILLs its own process at that moment: after the
pack tasks (``merge_segments``), after publishing the packs (``commit_build``), and during the
catalog commit (before the ``sources`` / ``packs`` / ``runs`` append, and right after the
``runs`` row). Then the next build completes, the catalog has no duplicate and no dangling row
(committed views *and* raw Delta tables, which other engines read directly), ``verify`` passes,
and ``vacuum(retention_hours=0)`` removes every leftover.

Races (4c): two full builds into one OUT over overlapping inputs, in two processes; and the
commit protocol under contention: many repetitions of two commits of the same source whose
resolution steps are forced to run before either commit point (the window the old "later
committer retires" rule lost), checked at every catalog version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

import iac_spark.catalog as cat
from iac_spark.catalog.store import DeltaRsStore
from iac_spark.errors import CatalogError
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

# --------------------------------------------------------------------------------------
# the subprocess: a build, killed by a hook this script installs
# --------------------------------------------------------------------------------------

_BUILD = r"""
import os, signal, sys
import iac_spark.catalog as cat

out, stage, sources = sys.argv[1], sys.argv[2], sys.argv[3:]

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if stage == "segments":  # every pack task done, nothing merged
    import iac_spark.packing.build as build
    build.merge_segments = die
elif stage == "published":  # packs published, commit not started
    import iac_spark.catalog.ingest as ingest
    ingest.commit_build = die
elif stage.startswith(("before:", "after:")):  # inside the commit, around one table's append
    from iac_spark.catalog.store import DeltaRsStore
    when, table = stage.split(":")
    append = DeltaRsStore.append
    def killing(self, name, data, *, run_id):
        if when == "before" and name == table:
            die()
        version = append(self, name, data, run_id=run_id)
        if when == "after" and name == table:
            die()
        return version
    DeltaRsStore.append = killing
elif stage != "none":
    raise SystemExit(f"unknown stage {stage}")
r = cat.build(None, sources, out, dataset="t", executor="local")
print(r.run_id)
"""


def run_build_process(out: str, sources: list[str], stage: str = "none") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _BUILD, out, stage, *sources],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("crash")
    corpus = generate_corpus(
        root, CorpusSpec(patients=3, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32, seed=17)
    )
    return [str(z) for z in corpus.zips]


def raw(out: str, name: str) -> pa.Table:
    return DeltaTable(os.path.join(out, "_catalog", name)).to_pyarrow_table()


def check_healed(out: str, want_records: int) -> None:
    """One live copy of everything, no dangling row, verify clean — committed and raw."""
    c = cat.open(out)
    recs = c.records()
    live = recs.filter(pc.invert(recs.column("retired")))
    uids = Counter(live.column("sop_instance_uid").to_pylist())
    assert len(uids) == want_records and set(uids.values()) == {1}, uids
    packs = {p["pack_id"]: p["path"] for p in c.packs().to_pylist()}
    assert set(recs.column("pack_id").to_pylist()) <= set(packs)  # no record without its pack
    assert all(os.path.isfile(os.path.join(out, p)) for p in packs.values())
    live_src = c.sources().filter(pc.invert(c.sources().column("superseded")))
    assert sorted(Counter(live_src.column("source_path").to_pylist()).values()) == [1] * 3
    report = cat.verify(out)
    assert report.ok, str(report)
    # raw tables, as DuckDB / Polars / a plain DeltaTable read them: no second live copy
    r = raw(out, "records")
    raw_live = Counter(
        r.filter(pc.invert(r.column("retired"))).column("sop_instance_uid").to_pylist()
    )
    assert set(raw_live.values()) == {1}, raw_live


def check_vacuumed(out: str) -> None:
    report = cat.vacuum(out, retention_hours=0)
    again = cat.vacuum(out, retention_hours=0, dry_run=True)
    assert again.nothing_to_do and "nothing" in str(again), str(again)
    assert not os.path.exists(os.path.join(out, "_staging"))
    referenced = {os.path.basename(p) for p in cat.open(out).packs().column("path").to_pylist()}
    on_disk = {f.name for f in Path(out, "packs").rglob("*") if f.is_file()}
    assert on_disk == referenced, (on_disk, referenced, str(report))
    committed = set(cat.open(out).committed_runs)
    for name in ("records", "sources", "errors", "packs"):  # no row of a run that never committed
        assert set(raw(out, name).column("run_id").to_pylist()) <= committed, name
    assert cat.verify(out).ok


STAGES = [
    "segments",  # driver killed after the pack tasks
    "published",  # after publishing the packs, before the commit
    "before:records",  # during the commit: sources appended
    "before:packs",  # sources, records, documents, errors appended
    "before:runs",  # every row appended and flagged, the commit point not reached
    "after:runs",  # committed, staging not yet cleaned
]


@pytest.mark.parametrize("stage", STAGES)
def test_driver_killed_at_a_stage_heals_on_the_next_build(
    stage: str, zips: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    proc = run_build_process(out, zips, stage)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err  # SIGKILLed where the hook says, not before
    leftovers = sorted(p.name for p in Path(out, "_staging").iterdir())
    assert len(leftovers) == 1  # the killed run's staging stays (nobody cleaned up)
    # a vacuum with the default retention keeps what the (maybe running) build left
    young = cat.vacuum(out, dry_run=True)
    if stage != "after:runs":
        assert not young.stale_staging and not young.orphan_packs and not young.dead_runs
    n = 5 * len(zips)  # 3 CT + 2 MR slices per patient zip
    result = cat.build(None, zips, out, dataset="t", executor="local")
    if stage == "after:runs":
        assert result.nothing_to_do  # the killed build had committed
    else:
        assert result.records == n
    check_healed(out, n)
    check_vacuumed(out)
    check_healed(out, n)


# --------------------------------------------------------------------------------------
# racing builds
# --------------------------------------------------------------------------------------


def test_two_build_processes_over_overlapping_inputs_pack_each_input_once(
    zips: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    a, b = run_build_process(out, zips[:2]), run_build_process(out, zips[1:])
    outs = [p.communicate(timeout=180) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    check_healed(out, 15)
    c = cat.open(out)
    live_src = c.sources().filter(pc.invert(c.sources().column("superseded")))
    shared = [s for s in live_src.to_pylist() if s["source_path"] == zips[1]]
    recs = c.records()
    live = recs.filter(pc.invert(recs.column("retired")))
    from_shared = {r["run_id"] for r in live.to_pylist() if r["source_path"] == zips[1]}
    assert from_shared == {shared[0]["run_id"]}  # the source's live rows come from one run
    assert max(outs[0][0].strip(), outs[1][0].strip()) == shared[0]["run_id"]  # the newer run


def test_a_build_committing_right_after_anothers_plan(
    zips: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B plans (every zip new), then A commits zips 0-1, then B reads what the catalog holds:
    B must read it as planned, pack zip 1 again (not call its instances duplicates of A's),
    and the race resolves to one live copy — not to none."""
    import iac_spark.catalog.ingest as ingest

    out = str(tmp_path / "out")
    plan_sources = ingest.plan_sources
    raced: list[Any] = []

    def plan_then_race(*args: Any, **kwargs: Any) -> Any:
        plan = plan_sources(*args, **kwargs)
        if not raced:  # only B's plan: A's own build goes through here too
            raced.append(None)
            raced[0] = cat.build(None, zips[:2], out, dataset="t", executor="local")
        return plan

    monkeypatch.setattr(ingest, "plan_sources", plan_then_race)
    b = cat.build(None, zips[1:], out, dataset="t", executor="local")
    assert raced[0].records == 10 and b.records == 10 and b.duplicates == 0
    check_healed(out, 15)


class _CommitPointBarrier:
    """A store whose ``runs`` appends wait until both racing commits reach their commit point:
    both have appended and resolved before either commits (the window the old rule lost)."""

    def __init__(self, inner: DeltaRsStore, barrier: threading.Barrier, delay: float) -> None:
        self.inner, self.barrier, self.delay = inner, barrier, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(self, name: Any, data: Any, *, run_id: str) -> int:
        if name == "runs":
            self.barrier.wait(timeout=60)
            time.sleep(self.delay)
        return self.inner.append(name, data, run_id=run_id)


def _local_build(paths: list[str], out: str) -> tuple[Any, list[Any]]:
    sources = survey(discover(paths))
    result = run_build(
        sources, out, executor=LocalExecutor(1), dataset="t", keep_staging=True,
        scan_options={"promoted": True},
    )  # fmt: skip
    return result, sources


def _live_uids_at_every_version(out: str) -> list[Counter[str]]:
    c = cat.open(out)
    found = []
    for v in range(c.version + 1):
        recs = cat.open(out, as_of=v).records()
        live = recs.filter(pc.invert(recs.column("retired")))
        found.append(Counter(live.column("sop_instance_uid").to_pylist()))
    return found


@pytest.mark.parametrize("forced", [True, False], ids=["both-resolve-first", "free-race"])
def test_racing_commits_of_one_source_keep_exactly_one_copy(
    forced: bool, zips: list[str], tmp_path: Path
) -> None:
    reps = 6
    for rep in range(reps):
        out = str(tmp_path / f"out{rep}")
        builds = [_local_build([zips[0], zips[1 + i]], out) for i in range(2)]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []  # reported below

        def commit(
            i: int,
            builds: list[Any] = builds,
            barrier: threading.Barrier = barrier,
            rep: int = rep,
            errors: list[BaseException] = errors,
        ) -> None:
            result, sources = builds[i]
            store: Any = DeltaRsStore(result.out)
            if forced:
                store = _CommitPointBarrier(store, barrier, delay=0.05 * ((rep + i) % 2))
            else:
                barrier.wait(timeout=60)
                time.sleep(0.01 * ((rep * 7 + i * 3) % 5))
            try:
                cat.commit_build(result.out, result, sources, store=store, planned_version=-1)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        per_version = _live_uids_at_every_version(out)
        assert all(set(u.values()) <= {1} for u in per_version), per_version  # never two copies
        assert len(per_version[-1]) == 15  # nothing lost: 5 instances of each of the 3 zips
        winner = max(b[0].run_id for b in builds)
        c = cat.open(out)
        live = c.records().filter(pc.invert(c.records().column("retired")))
        assert {r["run_id"] for r in live.to_pylist() if r["source_path"] == zips[0]} == {winner}
        r = raw(out, "records")
        raw_live = r.filter(pc.invert(r.column("retired"))).column("sop_instance_uid")
        assert set(Counter(raw_live.to_pylist()).values()) == {1}
        for b in builds:
            b[0].cleanup()


def test_winner_that_never_commits_leaves_the_loser_live(zips: list[str], tmp_path: Path) -> None:
    """The newer build dies after resolving: the older one's copy must stay live (never none)."""
    out = str(tmp_path / "out")
    old, new = (_local_build([zips[0]], out) for _ in range(2))
    assert old[0].run_id < new[0].run_id
    store = DeltaRsStore(out)

    class Dies(Exception):
        pass

    class DiesAtCommitPoint(_CommitPointBarrier):
        def append(self, name: Any, data: Any, *, run_id: str) -> int:
            if name == "runs":
                raise Dies
            return self.inner.append(name, data, run_id=run_id)

    with pytest.raises(CatalogError):
        cat.commit_build(
            out, new[0], new[1], store=DiesAtCommitPoint(store, threading.Barrier(1), 0),
            planned_version=-1,
        )  # fmt: skip
    cat.commit_build(out, old[0], old[1], planned_version=-1)
    c = cat.open(out)
    live = c.records().filter(pc.invert(c.records().column("retired")))
    assert live.num_rows == old[0].num_records and set(live.column("run_id").to_pylist()) == {
        old[0].run_id
    }
    cat.vacuum(out, retention_hours=0)  # the dead winner's rows and flags go
    r = raw(out, "records")
    assert set(r.column("run_id").to_pylist()) == {old[0].run_id}
    assert not any(r.column("retired").to_pylist())
    for b in (old, new):
        b[0].cleanup()


@pytest.mark.spark
def test_a_spark_build_racing_a_local_build_packs_each_input_once(
    spark: Any, zips: list[str], tmp_path: Path
) -> None:
    """The Spark executor (with the pack tasks' progress meters) against a local build in
    another process, over overlapping inputs."""
    out = str(tmp_path / "out")
    local = run_build_process(out, zips[:2])
    lines: list[str] = []
    mine = cat.build(spark, zips[1:], out, dataset="t", executor="spark", progress=lines.append)
    outs = local.communicate(timeout=180)
    assert local.returncode == 0, outs
    assert mine.records == 10 and any(ln.startswith("pack: tasks 2/2") for ln in lines), lines
    check_healed(out, 15)
