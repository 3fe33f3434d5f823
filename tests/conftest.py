"""Shared fixtures: one session-scoped local SparkSession and small generated corpora."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def delta_jars_missing() -> str | None:
    """Why the test session runs without Delta Lake (None: the `make delta-jars` cache is there)."""
    from iac_spark.errors import DeltaJarsNotFoundError
    from iac_spark.session import delta_jars

    try:
        delta_jars()
    except DeltaJarsNotFoundError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The one local SparkSession of the test run (local[2], UI off, 2 shuffle partitions).

    Delta-enabled whenever the Delta Lake jars are cached (always after `make test`, which runs
    `make delta-jars` first): one JVM per process can load jars only at its start, so the whole
    suite shares this session and the ``delta_spark`` tests run on it.
    """
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: Spark tests need Java 17")
    import iac_spark

    # local[2, 2]: two cores, and a failed task is retried once (tests inject failures)
    session = iac_spark.local_session(
        "local[2, 2]",
        delta=delta_jars_missing() is None,
        app_name="iac_spark-tests",
        shuffle_partitions=2,
        conf={"spark.task.maxFailures": "2", "spark.default.parallelism": "2"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def delta_spark(spark: object) -> object:
    """The test session, skipping the test when it has no Delta Lake (jars not cached)."""
    import iac_spark.catalog as cat

    if not cat.has_delta(spark):  # type: ignore[arg-type]
        pytest.skip(f"no Delta-enabled SparkSession: {delta_jars_missing()}")
    return spark


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> object:
    """3 patients, CT (64x64) + MR (32x32), one zip per patient with LICENSE.txt."""
    from iac_spark.testing.corpus import CorpusSpec, generate_corpus

    root = tmp_path_factory.mktemp("corpus")
    return generate_corpus(
        root,
        CorpusSpec(patients=3, ct_slices=6, mr_slices=4, ct_size=64, mr_size=32, seed=7),
    )


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """pydicom's bundled test files (many transfer syntaxes, charsets, no-preamble files)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).parent


def _failure_digest(text: str, first: int = 15, tail: int = 3000) -> str:
    """The first error lines of a Spark log (JVM frames left out) and its tail."""
    errors = [
        ln
        for ln in text.splitlines()
        if ("Error" in ln or "Exception" in ln) and not ln.lstrip().startswith("at ")
    ]
    return "\n".join(["first errors:", *errors[:first], "...", text[-tail:]])


@pytest.fixture(scope="session")
def spark_driver() -> Callable[..., dict[str, Any]]:
    """Run a test module as a Spark driver script in a subprocess; returns its JSON result.

    For sessions that cannot live beside the suite's ``spark`` (one SparkContext per process):
    Spark Connect's local server and ``local-cluster``. ``run(script, cwd=..., timeout=...)``
    starts ``python script RESULT_JSON`` in ``cwd`` with this environment less anything that
    would attach it to another JVM or Connect server, and ``SPARK_TESTING=1`` (a free port for
    a local Connect server, temporary work folders for local-cluster workers).
    """

    def run(script: str, *, cwd: Path, timeout: float) -> dict[str, Any]:
        drop = ("PYSPARK_GATEWAY", "SPARK_REMOTE", "SPARK_CONNECT_MODE", "SPARK_LOCAL_REMOTE")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.pop("SPARK_API_MODE", None)
        env.update(SPARK_TESTING="1", PYSPARK_PYTHON=sys.executable)
        result = cwd / f".{Path(script).stem}-result.json"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, os.path.abspath(script), str(result)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 or not result.is_file():
            pytest.fail(
                f"{Path(script).name} as a Spark driver failed (exit {done.returncode}):\n"
                + _failure_digest(done.stderr)
            )
        seen: dict[str, Any] = json.loads(result.read_text())
        seen.setdefault("seconds", {})["subprocess"] = round(time.perf_counter() - started, 2)
        print(f"{Path(script).name} driver timings (s): {seen['seconds']}")
        return seen

    return run
