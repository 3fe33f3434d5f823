"""Pack writer: plan, shard segments, merge, and whole builds on the local and Spark executors."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from iatro.iac import PackReader, VariableRecordPack
from pyspark import cloudpickle

import iac_spark
from iac_spark.errors import BuildError
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.packing.executor import Attempt
from iac_spark.packing.layout import DICOM_P10, RecordCodec
from iac_spark.packing.merge import merge_segments
from iac_spark.packing.plan import DICOM_PLAN, TaskPlan, plan_build, read_task
from iac_spark.packing.shard import ShardWriter
from iac_spark.packing.task import PackTaskSpec, dicom_members, run_pack_task

from . import executors
from .executors import FailingExecutor
from .helpers import write_zip

cloudpickle.register_pickle_by_value(executors)  # Spark workers cannot import the tests package

ZSTD = RecordCodec.create("zstd", level=3)


def _rows(*rows: tuple) -> pa.Table:
    names = ("path", "member", "sop_instance_uid", "crc32", "patient_id", "error", "series_instance_uid",
             "instance_number", "size")  # fmt: skip
    full = [dict(zip(names, r, strict=False)) for r in rows]
    defaults = {
        "patient_id": "P1",
        "error": None,
        "series_instance_uid": "s1",
        "instance_number": 1,
        "size": 100,
    }
    cols = {n: [r.get(n, defaults.get(n)) for r in full] for n in names}
    return pa.table({
        **{k: cols[k] for k in ("path", "member", "sop_instance_uid", "patient_id", "series_instance_uid", "error")},
        "crc32": pa.array(cols["crc32"], pa.int64()), "size": pa.array(cols["size"], pa.int64()),
        "instance_number": pa.array(cols["instance_number"], pa.int32()),
        "study_instance_uid": ["st"] * len(full), "modality": ["CT"] * len(full),
        "status": ["error" if r.get("error") else "ok" for r in full],
    })  # fmt: skip


def test_plan_duplicates_conflicts_errors_and_whole_patients(tmp_path: Path) -> None:
    rows = _rows(
        ("/b.zip", "x", "1.1", 5),  # identical duplicate of /a.zip!x (same uid + crc)
        ("/a.zip", "x", "1.1", 5),
        ("/a.zip", "y", "1.2", 6),
        ("/c.zip", "y", "1.2", 7),  # conflict: same uid, different bytes
        ("/a.zip", "bad", None, 0, None, "TruncatedMemberError: ..."),
        ("/d.zip", "z", "2.1", 8, "P2", None, "s1", 1, 1000),
        ("/d.zip", "w", "2.2", 9, "P2", None, "s1", None),
        ("/e.zip", "q", "3.1", 10, "P3", None, "s0", 2),
        ("/f.zip", "k", "9.9", 1),  # already in the catalog with the same bytes
    )
    known = pa.table({"identity": ["9.9"], "raw_crc32": pa.array([1], pa.int64())})
    plan = plan_build(rows, DICOM_PLAN, num_tasks=2, tasks_dir=str(tmp_path), known=known)
    dups = plan.duplicates.to_pylist()
    assert [(d["source_path"], d["kept_path"]) for d in dups] == [
        ("/b.zip", "/a.zip"),
        ("/f.zip", None),
    ]
    assert sorted(set(plan.conflicts.column("identity").to_pylist())) == ["1.2"]
    assert plan.scan_errors.column("source_member").to_pylist() == ["bad"]
    assert plan.num_records == 6  # both conflicting copies are kept
    tasks = [read_task(t.path) for t in plan.tasks]
    patients = [set(t.column("patient_id").to_pylist()) for t in tasks]
    assert all(len([p for p in patients if pid in p]) == 1 for pid in ("P1", "P2", "P3"))
    assert {"P2"} in patients  # the heaviest patient gets a task of its own
    for t in tasks:
        keys = [(r["patient_id"], r["series_instance_uid"], r["instance_number"] is None,
                 r["instance_number"] or 0) for r in t.to_pylist()]  # fmt: skip
        assert keys == sorted(keys)
    # every input row is in exactly one of: a task, scan_errors, duplicates
    assert plan.num_records + plan.scan_errors.num_rows + plan.duplicates.num_rows == rows.num_rows


def _values(i: int, patient: str, size: int) -> tuple:
    return (f"1.{i}", f"s-{patient}", "st", patient, "CT", i, size, "/src.zip", f"{i}.dcm")


def _writer(stage: Path, task: int, attempt: int, **kw: object) -> ShardWriter:
    return ShardWriter(str(stage), layout=DICOM_P10, codec=kw.pop("codec", ZSTD), task_id=task,
                       attempt_id=attempt, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_shard_writer_bounds_segments_and_memory(tmp_path: Path) -> None:
    target = 256 * 1024
    w = _writer(
        tmp_path, 3, 11, shard_target_bytes=target, codec=RecordCodec.create("zstd", level=1)
    )
    payloads = [os.urandom(40_000) for _ in range(4)]  # incompressible: stored ≈ raw
    (tmp_path / "warm").mkdir()
    warm = _writer(tmp_path / "warm", 0, 0)  # first-use imports
    warm.add(_values(0, "P", 10), b"x" * 10)
    warm.close()
    tracemalloc.start()
    n = 0
    for p in range(8):
        w.starts_patient_fitting(10 * 40_000)
        for _i in range(10):
            w.add(_values(n, f"P{p}", 40_000), payloads[n % 4])
            n += 1
    segs = w.close()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = sum(s.data_bytes for s in segs)
    assert total > 10 * target  # the corpus is many times the target ...
    assert peak - current < 2 * target  # ... but memory stays bounded by about one segment
    assert peak < 4 * target
    assert all(s.data_bytes <= target for s in segs)
    assert all(Path(s.path).name.startswith("seg-t00003-a11-") for s in segs)
    assert sum(s.num_records for s in segs) == n
    # a 400 kB patient exceeds the 256 kB target, so its segments chain
    assert any(s.continues for s in segs)
    left = sorted(f for f in os.listdir(tmp_path) if f != "warm")
    assert left == sorted(Path(s.path).name for s in segs)  # no spool file left


def test_merge_renames_big_and_concatenates_small(tmp_path: Path, testdata_dir: Path) -> None:
    ct = (testdata_dir / "CT_small.dcm").read_bytes()
    mr = (testdata_dir / "MR_small.dcm").read_bytes()
    stage = tmp_path / "_staging" / "r1"
    stage.mkdir(parents=True)
    segs = []
    for t, (patient, data) in enumerate([("P1", ct), ("P2", mr), ("P3", ct)]):
        w = _writer(stage, t, t)
        for i in range(3):
            w.add((f"{t}.{i}", f"ser-{patient}", "st", patient, "CT", i, len(data), "/x.zip",
                   f"{patient}/{i}"), data)  # fmt: skip
        segs += w.close()
    packs = merge_segments(
        segs, str(tmp_path), "ds", "r1", layout=DICOM_P10, pack_target_bytes=10**9
    )
    assert len(packs) == 1 and packs[0].published_by == "concat" and packs[0].num_records == 9
    pk = VariableRecordPack(packs[0].path)
    assert [pk.read(i) for i in range(9)] == [ct] * 3 + [mr] * 3 + [ct] * 3
    assert pk.slide_table.column("slide_id").to_pylist() == ["ser-P1", "ser-P2", "ser-P3"]
    assert pk.index_table.column("slide_idx").to_pylist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert pk.index_table.schema.names == DICOM_P10.index_schema.names
    # big segments (≥ half the target) are renamed, not copied
    w = _writer(stage, 9, 9)
    w.add(("9.1", "s", "st", "P9", "CT", 1, len(ct), "/x.zip", "a"), ct)
    seg = w.close()[0]
    ino = os.stat(seg.path).st_ino
    [big] = merge_segments([seg], str(tmp_path), "ds", "r2", layout=DICOM_P10,
                           pack_target_bytes=seg.data_bytes)  # fmt: skip
    assert big.published_by == "rename" and os.stat(big.path).st_ino == ino


def test_task_reports_unreadable_members(tmp_path: Path, testdata_dir: Path) -> None:
    ct = (testdata_dir / "CT_small.dcm").read_bytes()
    z = str(write_zip(tmp_path / "a.zip", {"ok.dcm": ct}))
    rows = _rows(
        (z, "ok.dcm", "1", zlib.crc32(ct), "P", None, "s", 1, len(ct)),
        (z, "gone.dcm", "2", 0, "P", None, "s", 2, 10),
        (z, "ok.dcm", "3", 12345, "P", None, "s", 3, len(ct)),  # changed since the scan
    ).select(list(DICOM_PLAN.columns))
    task_file = tmp_path / "task.arrow"
    with pa.OSFile(str(task_file), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as wr:
        wr.write_table(rows)
    spec = PackTaskSpec(
        TaskPlan(0, str(task_file), 3, 0), str(tmp_path), "dicom_p10", ZSTD, dicom_members
    )
    result = run_pack_task(spec, Attempt(0, 5))
    assert result.packed == {z: 1}
    assert [i.source_member for i in result.issues] == ["gone.dcm", "ok.dcm"]
    assert all(z in i.error for i in result.issues)
    assert "bytes changed since the scan" in result.issues[1].error


# ---- Spark end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, testdata_dir: Path):
    from iac_spark.testing.corpus import CorpusSpec, generate_corpus

    root = tmp_path_factory.mktemp("packcorpus")
    summary = generate_corpus(
        root, CorpusSpec(patients=5, ct_slices=8, mr_slices=5, ct_size=96, mr_size=48, seed=3)
    )
    first = zipfile.ZipFile(summary.zips[0])
    dcm = [n for n in first.namelist() if n.endswith(".dcm")]
    # an identical copy of one instance (duplicate) and a broken member (error row)
    write_zip(
        root / "extra.zip",
        {"copy.dcm": first.read(dcm[0]), "broken.dcm": first.read(dcm[1])[:5000]},
    )
    return summary


def _check_packs(result, corpus) -> None:
    """Every record byte-exact against its member, CRCs stored, patients never straddle packs."""
    assert result.num_records == corpus.dicom_members
    seen: set[str] = set()
    patients_by_pack: list[set[str]] = []
    for p in result.packs:
        pk = VariableRecordPack(p.path)
        assert pk.header["payload_type"] == "dicom_p10" and pk.header["codec"] == "zstd"
        assert pk.header["codec_params"] == {"level": 3}
        index = pk.index_table.to_pylist()
        raw = PackReader(p.path)
        batch = pk.read_many(range(len(index)), workers=2)
        for i, row in enumerate(index):
            assert zlib.crc32(raw.read_payload(i)) == row["crc32"]
            with zipfile.ZipFile(row["source_path"]) as zf:
                original = zf.read(row["source_member"])
            assert hashlib.sha256(pk.read(i)).digest() == hashlib.sha256(original).digest()
            assert batch[i] == original and row["raw_length"] == len(original)
            assert row["sop_instance_uid"] not in seen
            seen.add(row["sop_instance_uid"])
        patients_by_pack.append({r["patient_id"] for r in index})
        # each patient's records are contiguous and in (study, series, instance) order
        order = [r["patient_id"] for r in index]
        runs = [pid for i, pid in enumerate(order) if i == 0 or order[i - 1] != pid]
        assert len(runs) == len(set(runs))
        for pid in runs:
            keys = [(r["study_instance_uid"], r["series_instance_uid"], r["instance_number"])
                    for r in index if r["patient_id"] == pid]  # fmt: skip
            assert keys == sorted(keys)
    assert len(seen) == corpus.dicom_members
    for i, a in enumerate(patients_by_pack):
        for b in patients_by_pack[i + 1 :]:
            assert not a & b


def _executor(name: str, spark_session: object) -> object:
    if name == "local":
        return LocalExecutor(2, max_attempts=2)
    from iac_spark.spark_executor import SparkExecutor

    return SparkExecutor(spark_session)  # the session is local[2, 2]: one retry per task


@pytest.mark.parametrize("executor_name", ["local", pytest.param("spark", marks=pytest.mark.spark)])
def test_build_round_trip_with_retried_task(request, corpus, tmp_path: Path, executor_name) -> None:
    session = request.getfixturevalue("spark") if executor_name == "spark" else None
    executor = FailingExecutor(_executor(executor_name, session), {0: 1})
    out = tmp_path / "out"
    result = run_build(
        survey(discover([str(corpus.root)])), str(out), executor=executor, dataset="t",
        shard_target_bytes=150_000, pack_target_bytes=400_000, num_tasks=3,
    )  # fmt: skip
    _check_packs(result, corpus)
    dups = result.duplicates.to_pylist()
    assert len(dups) == 1 and dups[0]["source_member"] == "copy.dcm"
    assert result.issues.column("source_member").to_pylist() == ["broken.dcm"]
    # the failed first attempt of task 0 left nothing: no staging, only the result's packs
    assert not (out / "_staging").exists()
    assert sorted(os.listdir(out / "packs" / "t")) == sorted(
        Path(p.path).name for p in result.packs
    )
    extra = result.sources[str(corpus.root / "extra.zip")]
    assert (extra.members, extra.packed, extra.duplicates, extra.errors) == (2, 0, 1, 1)
    assert all(t.balanced for t in result.sources.values())


def test_local_and_spark_executors_give_the_same_packs(spark, corpus, tmp_path: Path) -> None:
    from iac_spark.spark_executor import SparkExecutor

    sources = survey(discover([str(corpus.root)]))
    results = {
        name: run_build(sources, str(tmp_path / name), executor=ex, dataset="t", num_tasks=2)
        for name, ex in (("local", LocalExecutor(2)), ("spark", SparkExecutor(spark)))
    }

    def records(r) -> list[tuple]:
        rows = []
        for p in r.packs:
            pk = VariableRecordPack(p.path)
            for i, ix in enumerate(pk.index_table.to_pylist()):
                rows.append((ix["sop_instance_uid"], ix["source_member"], zlib.crc32(pk.read(i))))
        return sorted(rows)

    assert records(results["local"]) == records(results["spark"])
    assert {k: v for k, v in results["local"].sources.items()} == results["spark"].sources


@pytest.mark.parametrize("executor_name", ["local", pytest.param("spark", marks=pytest.mark.spark)])
def test_failing_build_publishes_nothing(request, corpus, tmp_path: Path, executor_name) -> None:
    session = request.getfixturevalue("spark") if executor_name == "spark" else None
    executor = FailingExecutor(_executor(executor_name, session), {1: 5})
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="published nothing"):
        run_build(survey(discover([str(corpus.root)])), str(out), executor=executor, num_tasks=2)
    assert not (out / "packs" / "default").exists() or os.listdir(out / "packs" / "default") == []
    assert not (out / "_staging").exists()


@pytest.mark.spark
def test_build_packs_from_a_dataframe_and_read_back(spark, corpus, tmp_path: Path) -> None:
    df = (
        spark.read.format("zipdcm").option("content", "true").option("includeSkipped", "true")
        .load(str(corpus.root))
    )  # fmt: skip
    result = iac_spark.build_packs(df, str(tmp_path / "out"), dataset="t")
    _check_packs(result, corpus)
    assert all(t.balanced for t in result.sources.values())
    assert sum(t.skipped for t in result.sources.values()) == corpus.other_members
    back = spark.read.format("iac").option("content", "true").load(str(tmp_path / "out" / "packs"))
    assert back.count() == result.num_records
    rows = back.select("source_path", "source_member", "content", "pack_path", "row").collect()
    originals = {
        (r.path, r.member): r.content for r in df.select("path", "member", "content").collect()
    }
    for r in rows:
        assert r.content == originals[(r.source_path, r.source_member)]
    assert {r.pack_path for r in rows} == {p.path for p in result.packs}
