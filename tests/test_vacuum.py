"""Disk hygiene: staging cleaned on success and failure; ``vacuum --retention-hours``.

Builds run the real build core on the local executor (no JVM). A *running* build is a build
whose staging is kept and whose commit has not happened (``keep_staging=True``, no commit);
an *interrupted commit* is its rows appended without the ``runs`` row; a *dead* run is either,
aged past the retention by ``os.utime``.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

import iac_spark.catalog as cat
from iac_spark.catalog.rows import catalog_rows
from iac_spark.catalog.store import DeltaRsStore
from iac_spark.cli import main
from iac_spark.errors import BuildError, OptionError
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

from .executors import FailingExecutor


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("vacuum")
    corpus = generate_corpus(
        root, CorpusSpec(patients=2, ct_slices=2, mr_slices=1, ct_size=32, mr_size=32, seed=23)
    )
    return [str(z) for z in corpus.zips]


def _build(zips: list[str], out: str, **kw: Any) -> Any:
    return run_build(
        survey(discover(zips)), out, executor=kw.pop("executor", LocalExecutor(1)), dataset="t",
        scan_options={"promoted": True}, **kw,
    )  # fmt: skip


def _age_tree(root: Path, seconds: float) -> None:
    """Make everything under ``root`` (and it) look ``seconds`` old."""
    then = time.time() - seconds
    for p in [*root.rglob("*"), root]:
        os.utime(p, (then, then))


def _files(out: str) -> list[str]:
    return (
        sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())
        if os.path.isdir(out)
        else []
    )


def test_staging_is_removed_after_a_build_and_after_a_failed_one(
    zips: list[str], tmp_path: Path
) -> None:
    plain = str(tmp_path / "plain")
    result = _build(zips, plain)
    assert result.num_records == 6 and not os.path.exists(os.path.join(plain, "_staging"))
    out = str(tmp_path / "out")
    failing = FailingExecutor(LocalExecutor(1), {1: 1})  # the second pack task fails for good
    with pytest.raises(BuildError):
        _build(zips, str(tmp_path / "failed"), executor=failing, num_tasks=2)
    assert _files(str(tmp_path / "failed")) == []  # no segment, no pack, no staging
    # through the catalog: a failed build is recorded as failed and leaves no file
    failing = FailingExecutor(LocalExecutor(1), {0: 1}, phase="scan")
    with pytest.raises(BuildError):
        cat.build(None, zips, out, dataset="t", executor=failing)
    assert not os.path.exists(os.path.join(out, "_staging"))
    assert cat.open(out).runs(include_failed=True).column("status").to_pylist() == ["failed"]
    # and a successful catalog build cleans its staging too
    ok = cat.build(None, zips, out, dataset="t", executor="local")
    assert ok.records == 6 and not os.path.exists(os.path.join(out, "_staging"))
    assert cat.vacuum(out, retention_hours=0).nothing_to_do


def test_retention_keeps_a_running_builds_files_until_they_age(
    zips: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    cat.build(None, zips[:1], out, dataset="t", executor="local")
    running = _build(zips[1:], out, keep_staging=True)  # packs published, commit not started
    assert os.path.isdir(running.staging) and len(running.packs) == 1
    kept = cat.vacuum(out)
    assert kept.nothing_to_do and sorted(kept.kept) == sorted(
        [running.packs[0].path, running.staging]
    )
    assert "nothing to remove" in str(kept) and "2 kept (younger than 1 h)" in str(kept)
    _age_tree(Path(running.staging), 2 * 3600)
    # the pack's age is max(mtime, ctime) (publishing renames a segment, which updates ctime
    # only): a young ctime alone keeps the run live
    os.utime(running.packs[0].path, (time.time() - 2 * 3600,) * 2)
    assert cat.vacuum(out, dry_run=True).nothing_to_do
    time.sleep(0.5)
    aged = cat.vacuum(out, retention_hours=0.4 / 3600, dry_run=True)  # 0.4 s
    assert aged.orphan_packs == [running.packs[0].path] and aged.stale_staging == [running.staging]
    dry = cat.vacuum(out, retention_hours=0, dry_run=True)
    assert dry.orphan_packs == [running.packs[0].path] and dry.stale_staging == [running.staging]
    assert os.path.exists(running.packs[0].path)  # a dry run deletes nothing
    done = cat.vacuum(out, retention_hours=0)
    assert done.removed == dry.removed and done.bytes_freed > 0
    assert not os.path.exists(running.packs[0].path)
    assert not os.path.exists(os.path.join(out, "_staging"))
    assert cat.verify(out).ok and cat.vacuum(out, retention_hours=0).nothing_to_do


def test_rows_and_flags_of_runs_that_never_committed_are_removed(
    zips: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    first = cat.build(None, zips, out, dataset="t", executor="local")
    assert first.records == 6
    # an interrupted commit of a rebuild of the same zips: its rows, its flags on the first
    # run's rows, no runs row
    result = _build(zips, out, keep_staging=True)
    store = DeltaRsStore(out)
    rows = catalog_rows(result, survey(discover(zips)))
    store.append("sources", rows.sources, run_id=result.run_id)
    store.append("records", rows.records, run_id=result.run_id)
    store.update(
        "records", predicate=f"run_id = '{first.run_id}'",
        updates={"retired": "true", "retired_by_run": f"'{result.run_id}'"},
    )  # fmt: skip
    c = cat.open(out)
    assert c.records().num_rows == 6 and not any(c.records().column("retired").to_pylist())
    young = cat.vacuum(out, dry_run=True)
    assert young.nothing_to_do and result.staging in young.kept  # maybe still committing
    dry = cat.vacuum(out, retention_hours=0, dry_run=True)
    assert dry.dead_runs == [result.run_id] and dry.dead_rows == {"records": 6, "sources": 2}
    assert dry.flags_cleared == 6 and "1 dead run(s) with 8 catalog row(s)" in str(dry)
    done = cat.vacuum(out, retention_hours=0)
    assert done.dead_runs == [result.run_id]
    raw = DeltaTable(os.path.join(out, "_catalog", "records")).to_pyarrow_table()
    assert set(raw.column("run_id").to_pylist()) == {first.run_id}
    assert not any(raw.column("retired").to_pylist()) and raw.num_rows == 6
    assert cat.verify(out).ok and cat.vacuum(out, retention_hours=0).nothing_to_do
    # failed runs are finished: their rows go whatever the retention
    again = _build(zips, out, keep_staging=True)
    store.append(
        "records", catalog_rows(again, survey(discover(zips))).records, run_id=again.run_id
    )
    cat.record_failed_run(out, again.run_id, "t", started_at=datetime.now(timezone.utc))
    report = cat.vacuum(out)
    assert report.dead_runs == [again.run_id] and report.dead_rows == {"records": 6}
    assert again.packs[0].path in report.orphan_packs and again.staging in report.stale_staging
    live = cat.open(out).records()
    assert live.num_rows == 6 and not any(pc.fill_null(live.column("retired"), False).to_pylist())


def test_committed_runs_staging_goes_whatever_the_retention(
    zips: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    result = _build(zips, out, keep_staging=True)
    cat.commit_build(out, result, survey(discover(zips)))
    report = cat.vacuum(out, retention_hours=24)
    assert report.stale_staging == [result.staging] and not report.orphan_packs


def test_vacuum_cli_flag_and_bad_retention(
    zips: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    cat.build(None, zips, out, dataset="t", executor="local")
    leftover = _build(zips, str(tmp_path / "out"), keep_staging=True)
    assert main(["vacuum", out, "--dry-run"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["vacuum", out, "--dry-run", "--retention-hours", "0"]) == 0
    text = capsys.readouterr().out
    assert "(dry run): 1 orphan pack(s), 1 stale staging dir(s)" in text
    assert os.path.exists(leftover.staging)
    assert main(["vacuum", out, "--retention-hours", "0"]) == 0
    capsys.readouterr()
    assert main(["vacuum", out, "--dry-run", "--retention-hours", "0"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["vacuum", out, "--retention-hours", "-1"]) == 2
    assert "retention_hours must be a number >= 0" in capsys.readouterr().err
    with pytest.raises(OptionError):
        cat.vacuum(out, retention_hours=float("nan"))
