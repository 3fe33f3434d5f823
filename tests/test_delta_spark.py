"""Delta Lake on Spark: the `make delta-jars` cache lookup and ``local_session(delta=True)``.

The lookup is plain file-system logic, tested without a JVM on fake jar folders. The session
tests run on the suite's one session, which conftest starts with Delta whenever the jars
are cached; the catalog written and read through Spark Delta is tested in test_catalog.py.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import iac_spark.catalog as cat
from iac_spark import session
from iac_spark.errors import DeltaJarsNotFoundError, IacSparkError

SPARK_LINE = ".".join(version("pyspark").split(".")[:2])


def jar_folder(path: Path, *names: str, complete: bool = True) -> Path:
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never opened here
    if complete:
        (path / ".complete").touch()
    return path


def delta_jar(release: str, line: str = SPARK_LINE) -> str:
    return f"delta-spark_{line}_2.13-{release}.jar"


def test_env_folder_wins_and_lists_every_jar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = jar_folder(tmp_path / "jars", delta_jar("9.1.0"), "delta-storage-9.1.0.jar", "x.txt")
    monkeypatch.setenv(session.DELTA_JARS_ENV, str(folder))
    monkeypatch.setattr(session, "_DELTA_CACHE", tmp_path / "no-cache")
    assert session.delta_jars() == [
        str(folder / delta_jar("9.1.0")),
        str(folder / "delta-storage-9.1.0.jar"),
    ]


def test_env_folder_without_the_jar_for_this_spark_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = jar_folder(
        tmp_path / "jars", delta_jar("9.1.0", line="3.9"), "delta-storage-9.1.0.jar"
    )
    monkeypatch.setenv(session.DELTA_JARS_ENV, str(folder))
    with pytest.raises(DeltaJarsNotFoundError, match="make delta-jars") as err:
        session.delta_jars()
    assert str(folder) in str(err.value) and f"delta-spark_{SPARK_LINE}_2.13" in str(err.value)
    assert isinstance(err.value, IacSparkError)


def test_default_cache_picks_the_newest_complete_release_for_this_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(session.DELTA_JARS_ENV, raising=False)
    cache = tmp_path / "cache"
    jar_folder(cache / "4.9.0", delta_jar("4.9.0"))
    newest = jar_folder(cache / "4.10.0", delta_jar("4.10.0"), "delta-storage-4.10.0.jar")
    jar_folder(cache / "5.0.0", delta_jar("5.0.0"), complete=False)  # interrupted fetch
    jar_folder(cache / "6.0.0", delta_jar("6.0.0", line="3.9"))  # another Spark line
    monkeypatch.setattr(session, "_DELTA_CACHE", cache)
    assert session.delta_jars() == [
        str(newest / delta_jar("4.10.0")),
        str(newest / "delta-storage-4.10.0.jar"),
    ]


def test_missing_cache_says_run_make_delta_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(session.DELTA_JARS_ENV, raising=False)
    monkeypatch.setattr(session, "_DELTA_CACHE", tmp_path / "absent")
    with pytest.raises(DeltaJarsNotFoundError, match=r"run `make delta-jars`"):
        session.delta_jars()
    jar_folder(tmp_path / "absent" / "4.4.0", delta_jar("4.4.0"), complete=False)
    with pytest.raises(DeltaJarsNotFoundError, match=r"run `make delta-jars`"):
        session.delta_jars()


@pytest.mark.delta_spark
def test_local_session_with_delta(delta_spark: Any) -> None:
    spark = delta_spark
    conf = spark.sparkContext.getConf()
    jars = conf.get("spark.jars").split(",")
    assert [os.path.basename(j) for j in jars if "delta-spark_" in j] == [
        os.path.basename(j) for j in session.delta_jars() if "delta-spark_" in j
    ]
    assert session.DELTA_EXTENSION in spark.conf.get("spark.sql.extensions")
    assert spark.conf.get("spark.sql.catalog.spark_catalog") == session.DELTA_CATALOG
    assert cat.has_delta(spark)
    # asking again in the same process hands back the one session
    assert session.local_session(delta=True) is spark
    # DeltaTable from the delta-spark Python package talks to the jars' JVM classes
    from delta.tables import DeltaTable

    assert not DeltaTable.isDeltaTable(spark, "/nonexistent/iac-delta")
