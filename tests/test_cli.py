"""The iac-spark command: info and table output without Spark; build/sql/verify/vacuum with it."""

from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from iatro.iac import VariableRecordPack

from iac_spark.cli import format_table, main
from iac_spark.packing.merge import merge_segments
from iac_spark.packing.plan import RecordRef
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
    w = ShardWriter(str(stage), task_id=0, attempt_id=0)
    w.add(
        RecordRef("/x.zip", "a.dcm", len(ct), zlib.crc32(ct), "1.2.3", "s", "st", "P", "CT", 1), ct
    )
    [pack] = merge_segments(w.close(), str(tmp_path), "d", "r")
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
