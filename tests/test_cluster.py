"""A multi-executor cluster: catalog builds on ``local-cluster[2,1,1024]``, and OUT visibility.

``local-cluster[2,1,1024]`` runs two executor JVMs (started from the pyspark install), each
with its own Python workers and its own working directory, so a task sees nothing of the
driver's memory or working directory. Only one SparkContext can live in a process and the
suite has one, so a subprocess — this file run as a script, from a working directory that
holds none of the data — drives the cluster once per module and writes what it saw as JSON;
the tests compare that with the same builds on the local executor here (no JVM).

OUT that executors cannot see: on one machine every process shares the filesystem, so the
test gives a path that *names different directories in different processes*:
``/proc/self/cwd/...`` is the driver's working directory for the driver, and each executor's
own work directory for its tasks. That is what a laptop's ``/tmp`` or a driver-local disk is
to a real cluster (same name, other place), without root, mount namespaces or a second
machine; the check's other half (the driver cannot see what a task wrote) is tested on
:func:`~iac_spark.spark_executor.check_probes` directly.

``SPARK_TESTING`` (set by the ``spark_driver`` fixture) puts the workers' folders in a
temporary folder, removed when the cluster stops, instead of ``$SPARK_HOME/work`` inside the
virtualenv; the driver points the JVMs' temporary folder into the test's own.
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

pytestmark = pytest.mark.cluster

DRIVER_TIMEOUT = 600  # seconds, for a busy machine; starting three JVMs takes most of a run
MASTER = "local-cluster[2,1,1024]"
INVISIBLE = "/proc/self/cwd/not_shared_out"


# --------------------------------------------------------------------------- the cluster side
def _where(batches: Any) -> Any:
    """A task's process and working directory (mapInArrow)."""
    import pyarrow as pa

    for _ in batches:
        yield pa.RecordBatch.from_pylist([{"pid": os.getpid(), "cwd": os.getcwd()}])


def _driver() -> dict[str, Any]:
    """Everything that runs on the cluster (in the subprocess; cwd = work/driver, data in work/data)."""
    import iac_spark
    import iac_spark.catalog as cat
    from iac_spark.errors import BuildError
    from iac_spark.spark_executor import SparkExecutor

    seen: dict[str, Any] = {"seconds": {}, "driver_cwd": os.getcwd()}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        seen["seconds"][name] = round(time.perf_counter() - t0, 2)

    # the JVMs' temporary files (the workers' folders among them) stay in this test's folder
    jvm_tmp = os.path.abspath("../jvm-tmp")
    os.makedirs(jvm_tmp)
    java_tmp = f"-Djava.io.tmpdir={jvm_tmp}"
    spark = iac_spark.local_session(
        MASTER,
        shuffle_partitions=2,
        conf={
            "spark.driver.memory": "1g",
            "spark.driver.extraJavaOptions": java_tmp,
            "spark.executor.extraJavaOptions": java_tmp,
            "spark.local.dir": jvm_tmp,
        },
    )
    lap("session")
    seen["master"] = spark.sparkContext.master
    # wait until tasks have run in both executors (they register a moment after the session)
    executors: dict[str, int] = {}
    while len(executors) < 2 and time.perf_counter() - t0 < 300:
        for row in spark.range(0, 4, 1, 4).mapInArrow(_where, "pid long, cwd string").collect():
            executors[row["cwd"]] = row["pid"]
    seen["executors"] = executors
    lap("executors")

    df = spark.read.format("zipdcm").option("includeSkipped", "true").load("../data/dicom")
    seen["zipdcm"] = sorted(set(df.select("path").toArrow().column("path").to_pylist()))
    seen["zipdcm_ok"] = df.filter("status = 'ok'").count()
    lap("scan")

    executor = SparkExecutor(spark)
    started = time.perf_counter()
    executor.check_visible(os.path.abspath("../out"))
    seen["check_seconds"] = round(time.perf_counter() - started, 2)
    seen["shares_filesystem"] = executor.shares_filesystem()

    built = cat.build(spark, ["../data/dicom"], "../out", dataset="ct")
    notes = cat.build(spark, ["../data/text"], "../out", dataset="notes", kind="text")
    seen["builds"] = {
        name: {"out": r.out, "records": r.records, "errors": r.errors, "skipped": r.skipped}
        for name, r in (("dicom", built), ("text", notes))
    }
    lap("builds")

    try:
        cat.build(spark, [os.path.abspath("../data/dicom")], INVISIBLE, dataset="x")
        seen["invisible"] = None
    except BuildError as exc:
        seen["invisible"] = str(exc)
    here = os.path.join(os.getcwd(), "not_shared_out")  # what INVISIBLE is for the driver
    seen["invisible_driver_side"] = sorted(
        os.path.relpath(os.path.join(d, f), here) for d, _, fs in os.walk(here) for f in fs
    )
    seen["invisible_executor_side"] = [
        os.path.exists(os.path.join(cwd, "not_shared_out")) for cwd in executors
    ]
    lap("invisible OUT")
    spark.stop()
    return seen


# --------------------------------------------------------------------------- the test side
@pytest.fixture(scope="module")
def cluster_run(
    tmp_path_factory: pytest.TempPathFactory, spark_driver: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Generate the small corpora, run :func:`_driver` on the cluster once, return what it saw."""
    if shutil.which("java") is None:
        pytest.fail("no Java runtime: the local-cluster tests need Java 17")
    from iac_spark.testing.corpus import CorpusSpec, generate_corpus
    from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

    work = tmp_path_factory.mktemp("cluster")
    generate_corpus(
        work / "data" / "dicom",
        CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=32, mr_size=32),
    )
    generate_text_corpus(work / "data" / "text", TextCorpusSpec(patients=3, docs_per_patient=3))
    (work / "driver").mkdir()
    seen = spark_driver(__file__, cwd=work / "driver", timeout=DRIVER_TIMEOUT)
    seen["work"] = str(work)
    return seen


def test_tasks_run_in_two_executors_away_from_the_driver(cluster_run: dict[str, Any]) -> None:
    assert cluster_run["master"] == MASTER
    executors = cluster_run["executors"]
    assert len(executors) == 2 and len(set(executors.values())) == 2
    assert cluster_run["driver_cwd"] not in executors  # each executor works in its own folder
    assert cluster_run["shares_filesystem"] is False  # so the visibility check runs


def test_relative_scan_paths_resolve_on_the_driver(cluster_run: dict[str, Any]) -> None:
    dicom = os.path.join(cluster_run["work"], "data", "dicom")
    assert cluster_run["zipdcm"] == [os.path.join(dicom, f"PAT-000{i}.zip") for i in (0, 1)]
    assert cluster_run["zipdcm_ok"] == 10


def test_catalog_builds_on_the_cluster_equal_local_ones(
    cluster_run: dict[str, Any], tmp_path: Path
) -> None:
    import iac_spark.catalog as cat

    work = cluster_run["work"]
    out, local_out = os.path.join(work, "out"), str(tmp_path / "local")
    b = cluster_run["builds"]
    assert b["dicom"]["out"] == b["text"]["out"] == out  # "../out" from the driver's cwd
    assert (b["dicom"]["records"], b["dicom"]["skipped"], b["dicom"]["errors"]) == (10, 2, 0)
    assert b["text"]["records"] == 3 and b["text"]["errors"] == 0
    data = os.path.join(work, "data")
    cat.build(None, [os.path.join(data, "dicom")], local_out, dataset="ct", executor="local")
    cat.build(None, [os.path.join(data, "text")], local_out, dataset="notes", kind="text", executor="local")  # fmt: skip

    def query(where: str, sql: str) -> list[tuple[Any, ...]]:
        return sorted((tuple(r.values()) for r in cat.sql(where, sql).to_pylist()), key=repr)

    for sql in (
        "SELECT sop_instance_uid, raw_crc32, patient_id, modality FROM records WHERE NOT retired",
        "SELECT doc_id, raw_crc32, patient_id, encoding FROM documents WHERE NOT retired",
        "SELECT source_path, status, members, packed, duplicates, errors, skipped FROM sources",
    ):
        got = query(out, sql)
        assert got == query(local_out, sql) and got, sql
    assert cat.verify(out, decode=True).ok


def test_out_invisible_to_executors_fails_up_front(cluster_run: dict[str, Any]) -> None:
    message = cluster_run["invisible"]
    assert message is not None, "the build succeeded with an OUT the executors cannot see"
    assert message.startswith(f"OUT {INVISIBLE} is not visible to the Spark executors")
    assert "cannot read the marker" in message and "Databricks Volume" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    # nothing was packed: the driver's side holds at most the failed run's catalog rows
    driver_side = cluster_run["invisible_driver_side"]
    assert not [f for f in driver_side if not f.startswith("_catalog/")], driver_side
    assert cluster_run["invisible_executor_side"] == [False, False]  # nothing written there
    assert cluster_run["check_seconds"] < 30  # one tiny job (seconds even on a busy machine)


# ------------------------------------------------------------ the check's logic without a JVM
def test_check_probes_names_each_failure(tmp_path: Path) -> None:
    from iac_spark.errors import BuildError
    from iac_spark.packing.executor import Attempt
    from iac_spark.spark_executor import VisibilityProbe, check_probes, probe_visibility

    marker = tmp_path / "marker"
    marker.write_text("tok")
    ok = probe_visibility(str(marker), Attempt(0, 7))
    assert ok.token == "tok" and ok.reply is not None and Path(ok.reply).read_text() == "tok"
    check_probes("/o", str(marker), "tok", [ok])  # seen both ways: no error
    missing = probe_visibility(str(tmp_path / "elsewhere" / "marker"), Attempt(1, 8))
    assert missing.token is None and "FileNotFoundError" in str(missing.error)
    unseen_reply = VisibilityProbe("h", "/w", "tok", str(tmp_path / "only-there"))
    cases = [
        (missing, "cannot read the marker"),
        (VisibilityProbe("h", "/w", "other", None), "finds another file"),
        (VisibilityProbe("h", "/w", "tok", None, "PermissionError: no"), "cannot write beside"),
        (unseen_reply, "the driver cannot see the file"),
    ]
    for probe, words in cases:
        with pytest.raises(BuildError, match=words) as info:
            check_probes("/o", str(marker), "tok", [ok, probe])
        assert str(info.value).startswith("OUT /o is not visible to the Spark executors")


def test_visibility_check_is_skipped_only_for_local_masters() -> None:
    from iac_spark.spark_executor import SparkExecutor

    class Context:
        def __init__(self, master: str) -> None:
            self.master = master

    class Classic:
        def __init__(self, master: str) -> None:
            self.sparkContext = Context(master)

        def range(self, *args: Any) -> Any:
            raise AssertionError("the check ran a Spark job")

    class Connect:  # only its class's module matters to is_connect
        __module__ = "pyspark.sql.connect.session"

    for master, shared in [
        ("local", True), ("local[2]", True), ("local[*, 3]", True),
        ("local-cluster[2,1,1024]", False), ("spark://host:7077", False), ("yarn", False),
    ]:  # fmt: skip
        assert SparkExecutor(Classic(master)).shares_filesystem() is shared, master  # type: ignore[arg-type]
    SparkExecutor(Classic("local[2]")).check_visible("/proc/self/cwd/x")  # type: ignore[arg-type]
    assert SparkExecutor(Connect()).shares_filesystem() is False  # type: ignore[arg-type]


if __name__ == "__main__":  # the cluster driver: python tests/test_cluster.py RESULT_JSON
    outcome = _driver()
    Path(sys.argv[1]).write_text(json.dumps(outcome))
