"""Spark Connect: ``zipdcm`` / ``ziptext`` scans and catalog builds over ``remote("local[2]")``.

pyspark's local Connect server (``SparkSession.builder.remote("local[2]")``, which
:func:`iac_spark.session.remote_session` calls) runs as a classic SparkContext *inside* the
process that starts it, and pyspark refuses to start one beside the suite's classic session
(``SESSION_ALREADY_EXIST``). So one subprocess — this file run as a script — does all the
Connect work once per module and writes what it saw as JSON; the tests compare that with the
same work done here without a JVM (the sources' readers called directly, catalog builds on the
local executor). The ``spark_driver`` fixture sets ``SPARK_TESTING``, which makes the server
listen on a free port instead of 15002, so runs on a shared machine do not meet each other's
servers.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.connect

DRIVER_TIMEOUT = 600  # seconds, for a busy machine; starting the JVM takes most of a run
DICOM_COLUMNS = ("path", "member", "crc32", "sop_instance_uid", "status")
TEXT_COLUMNS = ("path", "member", "crc32", "doc_id", "n_chars", "status")


# --------------------------------------------------------------------------- the Connect side
def _driver() -> dict[str, Any]:
    """Everything that runs over Spark Connect (in the subprocess, cwd = the data's folder)."""
    import iac_spark
    import iac_spark.catalog as cat
    from iac_spark.session import is_connect, remote_session
    from iac_spark.spark_executor import SparkExecutor

    seen: dict[str, Any] = {"seconds": {}}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        seen["seconds"][name] = round(time.perf_counter() - t0, 2)

    spark = remote_session(
        "local[2]",
        shuffle_partitions=2,
        # reports every 100 ms, so even this small build's jobs send some (default 2 s)
        conf={"spark.driver.memory": "1g", "spark.connect.progress.reportInterval": "100ms"},
    )
    lap("session")
    seen["session"] = {
        "class": f"{type(spark).__module__}.{type(spark).__name__}",
        "is_connect": is_connect(spark),
        "has_delta": cat.has_delta(spark),
        "parallelism": SparkExecutor(spark).parallelism(),
        "registered_again": iac_spark.register(spark) is spark,
        "local_session_reuses_it": iac_spark.local_session() is spark,
    }
    dicom, text = os.path.abspath("dicom"), os.path.abspath("text")

    def rows(fmt: str, path: str, columns: tuple[str, ...]) -> list[list[Any]]:
        df = spark.read.format(fmt).option("includeSkipped", "true").load(path)
        table = df.select(*columns).toArrow()
        return [list(r.values()) for r in table.to_pylist()]

    seen["zipdcm"] = rows("zipdcm", dicom, DICOM_COLUMNS)
    seen["ziptext"] = rows("ziptext", text, TEXT_COLUMNS)
    lap("scans")
    try:  # a relative path means nothing on the server: refused with that reason
        spark.read.format("zipdcm").load("dicom").count()
        seen["relative_load"] = None
    except Exception as exc:
        seen["relative_load"] = f"{type(exc).__name__}: {exc}"
    lap("relative load")

    progress: list[str] = []
    # relative sources and OUT: catalog.build resolves them here, in the client
    built = cat.build(spark, ["dicom"], "out", dataset="ct", progress=progress.append)
    lap("dicom build")
    again = cat.build(spark, ["dicom"], "out", dataset="ct")
    notes = cat.build(spark, ["text"], "out", dataset="notes", kind="text")
    lap("text build")
    seen["builds"] = {
        name: {"records": r.records, "errors": r.errors, "skipped": r.skipped,
               "duplicates": r.duplicates, "new_packs": r.new_packs, "nothing": r.nothing_to_do}
        for name, r in (("dicom", built), ("rerun", again), ("text", notes))
    }  # fmt: skip
    seen["progress"] = progress

    df = spark.read.format("zipdcm").option("includeSkipped", "true").load(dicom)
    packed = iac_spark.build_packs(df, os.path.abspath("frame_out"), dataset="frame")
    seen["build_packs"] = {"records": sum(p.num_records for p in packed.packs)}
    packs = os.path.abspath(os.path.join("out", "packs", "ct"))
    iac = spark.read.format("iac").load(packs).select("sop_instance_uid", "crc32").toArrow()
    seen["iac"] = sorted(iac.column("sop_instance_uid").to_pylist())
    lap("build_packs + iac")
    spark.stop()
    return seen


# --------------------------------------------------------------------------- the test side
@pytest.fixture(scope="module")
def connect_run(
    tmp_path_factory: pytest.TempPathFactory, spark_driver: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Generate the small corpora, run :func:`_driver` over Connect once, return what it saw."""
    if shutil.which("java") is None:
        pytest.fail("no Java runtime: Spark Connect tests need Java 17")
    from iac_spark.testing.corpus import CorpusSpec, generate_corpus
    from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

    work = tmp_path_factory.mktemp("connect")
    generate_corpus(
        work / "dicom", CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=32, mr_size=32)
    )
    generate_text_corpus(work / "text", TextCorpusSpec(patients=3, docs_per_patient=3))
    seen = spark_driver(__file__, cwd=work, timeout=DRIVER_TIMEOUT)
    seen["work"] = str(work)
    return seen


def _reader_rows(source: Any, path: str, columns: tuple[str, ...]) -> list[list[Any]]:
    """What the source yields, read in this process without Spark (partitions(), then read())."""
    ds = source({"path": path, "includeSkipped": "true"})
    reader = ds.reader(ds.schema())
    out = []
    for part in reader.partitions():
        for batch in reader.read(part):
            out += [[r[c] for c in columns] for r in batch.to_pylist()]
    return out


def _key(row: list[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in row)


def test_remote_session_is_connect_with_our_sources(connect_run: dict[str, Any]) -> None:
    s = connect_run["session"]
    assert s["class"] == "pyspark.sql.connect.session.SparkSession"
    assert s["is_connect"] and s["registered_again"] and s["local_session_reuses_it"]
    assert s["has_delta"] is False  # the server runs without the Delta extension
    assert s["parallelism"] == 2  # asked of the server (local[2]), not this machine's CPU count


def test_zipdcm_scan_over_connect_equals_the_reader(connect_run: dict[str, Any]) -> None:
    from iac_spark.sources import ZipDcmDataSource

    work = connect_run["work"]
    want = _reader_rows(ZipDcmDataSource, os.path.join(work, "dicom"), DICOM_COLUMNS)
    got = connect_run["zipdcm"]
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    assert {r[-1] for r in got} == {"ok", "skipped"} and sum(r[-1] == "ok" for r in got) == 10
    assert all(os.path.isabs(r[0]) and r[0].startswith(work) for r in got)


def test_ziptext_scan_over_connect_equals_the_reader(connect_run: dict[str, Any]) -> None:
    from iac_spark.sources import ZipTextDataSource

    work = connect_run["work"]
    want = _reader_rows(ZipTextDataSource, os.path.join(work, "text"), TEXT_COLUMNS)
    got = connect_run["ziptext"]
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    assert sum(r[-1] == "ok" for r in got) == 9  # 3 patients x 3 notes


def test_relative_load_path_is_refused_with_the_reason(connect_run: dict[str, Any]) -> None:
    # the server plans the scan in a working directory of its own (pyspark's local server: a
    # folder per session), so a relative path names nothing there, whatever the client's cwd
    message = connect_run["relative_load"]
    assert message is not None
    assert "relative path 'dicom' does not exist" in message
    assert "over Spark Connect the server's" in message and "pass an absolute path" in message


def _local_build(work: str, out: str) -> None:
    """The same two catalog builds as the driver's, on the local executor (no JVM)."""
    import iac_spark.catalog as cat

    cat.build(None, [os.path.join(work, "dicom")], out, dataset="ct", executor="local")
    cat.build(None, [os.path.join(work, "text")], out, dataset="notes", kind="text", executor="local")  # fmt: skip


def test_catalog_builds_over_connect_equal_local_ones(
    connect_run: dict[str, Any], tmp_path: Path
) -> None:
    import iac_spark.catalog as cat

    work = connect_run["work"]
    remote_out, local_out = os.path.join(work, "out"), str(tmp_path / "local")
    _local_build(work, local_out)
    b = connect_run["builds"]
    assert (b["dicom"]["records"], b["dicom"]["skipped"], b["dicom"]["errors"]) == (10, 2, 0)
    assert b["dicom"]["new_packs"] >= 1 and b["rerun"]["nothing"]
    assert b["text"]["records"] == 3 and b["text"]["errors"] == 0

    def query(out: str, sql: str) -> list[tuple[Any, ...]]:
        return sorted((tuple(r.values()) for r in cat.sql(out, sql).to_pylist()), key=repr)

    for sql in (
        "SELECT sop_instance_uid, raw_crc32, patient_id, modality FROM records WHERE NOT retired",
        "SELECT doc_id, raw_crc32, patient_id, encoding FROM documents WHERE NOT retired",
        "SELECT source_path, status, members, packed, duplicates, errors, skipped FROM sources",
    ):
        got, want = query(remote_out, sql), query(local_out, sql)
        assert got == want and got, sql
    assert cat.verify(remote_out, decode=True).ok
    # the staging of the runs (and of the visibility checks, always run over Connect) is gone
    staging = os.path.join(remote_out, "_staging")
    assert not os.path.isdir(staging) or not os.listdir(staging)


def test_connect_progress_lines(connect_run: dict[str, Any]) -> None:
    # the build's own messages, and SparkProgress's lines from the Connect server's reports
    lines = [ln for ln in connect_run["progress"] if ": tasks " in ln]
    assert lines, connect_run["progress"]
    assert {ln.split(":")[0] for ln in lines} <= {"scan", "pack"}
    assert all(ln.split(",")[0].endswith("/2") for ln in lines)  # two tasks in each phase


def test_build_packs_and_iac_reader_over_connect(connect_run: dict[str, Any]) -> None:
    assert connect_run["build_packs"]["records"] == 10
    uids = [r[3] for r in connect_run["zipdcm"] if r[-1] == "ok"]
    assert connect_run["iac"] == sorted(uids)


# --------------------------------------------------------------- Connect logic without a JVM
class _Stage:
    def __init__(self, done: int, total: int) -> None:
        self.num_completed_tasks, self.num_tasks = done, total


def test_progress_handler_reports_our_operation_only() -> None:
    from iac_spark.progress import SparkProgress

    class FakeConnect:  # only its class's module matters to is_connect
        __module__ = "pyspark.sql.connect.session"

        def __init__(self) -> None:
            self.handlers: list[Any] = []

        def registerProgressHandler(self, handler: Any) -> None:
            self.handlers.append(handler)

        def removeProgressHandler(self, handler: Any) -> None:
            self.handlers.remove(handler)

    spark = FakeConnect()
    lines: list[str] = []
    with SparkProgress(spark, "pack", planned_bytes=1000, emit=lines.append, interval=3600):  # type: ignore[arg-type]
        (handler,) = spark.handlers
        handler(stages=[_Stage(1, 4)], inflight_tasks=3, operation_id="op1", done=False)
        handler(stages=[_Stage(3, 9)], inflight_tasks=1, operation_id="op2", done=False)
        handler(stages=[_Stage(4, 4)], inflight_tasks=0, operation_id="op1", done=False)
        handler(stages=[_Stage(4, 4)], inflight_tasks=0, operation_id="op1", done=True)
    assert spark.handlers == []
    # 1/4 is not due yet (interval), another operation is ignored, 4/4 is reported once
    assert [ln.split(",")[0] for ln in lines] == ["pack: tasks 4/4"]
    assert "1000 B of 1000 B" in lines[0]


def test_relative_option_paths_resolve_where_the_options_are_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iac_spark.errors import InputNotFoundError
    from iac_spark.sources.options import ZipDcmOptions, ZipTextOptions

    (tmp_path / "zips").mkdir()
    monkeypatch.chdir(tmp_path)
    parsed = ZipDcmOptions.parse({"paths": '["zips", "zips/*.zip", "/abs/x.zip", "dbfs:/a"]'})
    assert parsed.paths == (str(tmp_path / "zips"), str(tmp_path / "zips/*.zip"), "/abs/x.zip", "dbfs:/a")  # fmt: skip
    with pytest.raises(InputNotFoundError, match="relative path 'notes' does not exist in"):
        ZipTextOptions.parse({"path": "notes"})


if __name__ == "__main__":  # the Connect driver: python tests/test_connect.py RESULT_JSON
    outcome = _driver()
    Path(sys.argv[1]).write_text(json.dumps(outcome))
