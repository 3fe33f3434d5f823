"""The iac-spark command: info and table output without Spark; build/sql/verify/vacuum with it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from iatro.iac import VariableRecordPack

from iac_spark.cli import format_table, main
from iac_spark.packing.layout import DICOM_P10, RecordCodec
from iac_spark.packing.merge import merge_segments
from iac_spark.packing.shard import ShardWriter


def test_format_table_aligns_and_counts() -> None:
    text = format_table(pa.table({"m": ["CT", None], "n": [1, 22]}))
    assert text.splitlines() == ["m    |  n", "-----+---", "CT   |  1", "NULL | 22", "(2 rows)"]


def test_info_shows_header_and_tables(
    tmp_path: Path, testdata_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = (testdata_dir / "CT_small.dcm").read_bytes()
    stage = tmp_path / "_staging" / "r"
    stage.mkdir(parents=True)
    w = ShardWriter(str(stage), layout=DICOM_P10, codec=RecordCodec.create("zstd"), task_id=0,
                    attempt_id=0)  # fmt: skip
    w.add(("1.2.3", "s", "st", "P", "CT", 1, len(ct), "/x.zip", "a.dcm"), ct)
    [pack] = merge_segments(w.close(), str(tmp_path), "d", "r", layout=DICOM_P10)
    assert main(["info", pack.path]) == 0
    out = capsys.readouterr().out
    assert '"payload_type": "dicom_p10"' in out and "records    1" in out and "1.2.3" in out
    assert VariableRecordPack(pack.path).read(0) == ct


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sql"])
    assert exc.value.code == 2


def test_missing_java_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from iac_spark.errors import JavaNotFoundError
    from iac_spark.session import check_java

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    with pytest.raises(JavaNotFoundError) as exc:
        check_java()
    message = str(exc.value)
    assert message.startswith("Spark needs a Java runtime") and "\n" not in message
    from pyspark.sql import SparkSession

    # the CLI path, when no session runs in this process
    if SparkSession.getActiveSession() is None:
        assert main(["scan", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"iac-spark: {message}"


@pytest.mark.spark
def test_build_sql_verify_vacuum_end_to_end(spark, small_corpus, tmp_path: Path, capsys) -> None:
    import json

    out = str(tmp_path / "out")
    src = str(small_corpus.root)
    assert main(["build", src, "--out", out, "--dataset", "cli", "--master", "local[2]"]) == 0
    first = capsys.readouterr()
    assert f"records         {small_corpus.dicom_members}" in first.out
    assert "scanned" in first.err  # progress lines go to stderr
    assert main(["build", src, "--out", out, "--dataset", "cli"]) == 0
    assert "packs           0 new" in capsys.readouterr().out  # the rerun adds nothing
    assert main(["sql", out, "SELECT count(*) AS n FROM records", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": small_corpus.dicom_members}]
    assert main(["sql", out, "SELECT pack_id FROM packs", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("pack_id\n")
    assert main(["verify", out]) == 0
    capsys.readouterr()
    [pack] = list((tmp_path / "out" / "packs" / "cli").glob("*.iac"))
    raw = bytearray(pack.read_bytes())
    raw[-10] ^= 0xFF  # flip a byte in the last record's stored data
    pack.write_bytes(bytes(raw))
    assert main(["verify", out]) == 1
    assert pack.name in capsys.readouterr().out
    (tmp_path / "out" / "packs" / "cli" / "orphan.iac").write_bytes(b"x")
    assert main(["vacuum", out, "--dry-run"]) == 0
    assert "orphan.iac" in capsys.readouterr().out
    assert (tmp_path / "out" / "packs" / "cli" / "orphan.iac").exists()


def test_build_with_the_local_executor_needs_no_java(small_corpus, tmp_path: Path, capsys) -> None:
    """``--executor local`` runs scan, plan, tasks, merge and commit in this process."""
    import subprocess
    import sys

    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "java").write_text("#!/bin/sh\necho 'no java here' >&2\nexit 1\n")
    (stub / "java").chmod(0o755)
    env = {
        k: v for k, v in __import__("os").environ.items() if k not in ("JAVA_HOME", "SPARK_HOME")
    }
    env["PATH"] = f"{stub}:{env['PATH']}"
    out = str(tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-m", "iac_spark.cli", "build", str(small_corpus.root), "--out", out,
         "--executor", "local"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"records         {small_corpus.dicom_members}" in done.stdout
    assert main(["verify", out, "--decode"]) == 0
