"""Pack writer: plan, shard segments, merge, and the Spark build end to end."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from iatro.iac import PackReader, VariableRecordPack

import iac_spark
from iac_spark.errors import BuildError
from iac_spark.packing.merge import merge_segments
from iac_spark.packing.plan import RecordRef, plan_build
from iac_spark.packing.shard import ShardWriter
from iac_spark.packing.task import run_task, write_task_spec

from .helpers import write_zip


def _row(path, member, uid, crc, patient="P1", error=None, series="s1", inst=1, size=100):
    return {
        "path": path, "member": member, "size": size, "crc32": crc, "sop_instance_uid": uid,
        "series_instance_uid": series, "study_instance_uid": "st", "patient_id": patient,
        "modality": "CT", "instance_number": inst, "error": error,
    }  # fmt: skip


def test_plan_duplicates_conflicts_errors_and_whole_patients() -> None:
    rows = [
        _row("/b.zip", "x", "1.1", 5),  # identical duplicate of /a.zip!x (same uid + crc)
        _row("/a.zip", "x", "1.1", 5),
        _row("/a.zip", "y", "1.2", 6),
        _row("/c.zip", "y", "1.2", 7),  # conflict: same uid, different bytes
        _row("/a.zip", "bad", None, 0, error="TruncatedMemberError: ..."),
        _row("/d.zip", "z", "2.1", 8, patient="P2", size=1000),
        _row("/d.zip", "w", "2.2", 9, patient="P2", inst=None),
        _row("/e.zip", "q", "3.1", 10, patient="P3", series="s0", inst=2),
    ]
    plan = plan_build(rows, num_tasks=2, known={"9.9": [1]})
    assert [(d.path, d.kept_path) for d in plan.duplicates] == [("/b.zip", "/a.zip")]
    assert [c.sop_instance_uid for c in plan.conflicts] == ["1.2"]
    assert [(e.source_member, e.stage) for e in plan.errors] == [("bad", "scan")]
    assert plan.num_records == 6  # both conflicting copies are kept
    patients = [{r.patient_id for r in t} for t in plan.tasks]
    assert all(len([p for p in patients if pid in p]) == 1 for pid in ("P1", "P2", "P3"))
    assert {"P2"} in patients  # the heaviest patient gets a task of its own
    for t in plan.tasks:
        assert t == sorted(t, key=RecordRef.sort_key)
    # already in the catalog: identical → duplicate of the catalog copy
    again = plan_build([_row("/a.zip", "x", "1.1", 5)], num_tasks=1, known={"1.1": [5]})
    assert again.num_records == 0 and again.duplicates[0].kept_path is None


def _ref(i: int, patient: str, size: int) -> RecordRef:
    return RecordRef(
        "/src.zip", f"{i}.dcm", size, 0, f"1.{i}", f"s-{patient}", "st", patient, "CT", i
    )


def test_shard_writer_bounds_segments_and_memory(tmp_path: Path) -> None:
    target = 256 * 1024
    w = ShardWriter(
        str(tmp_path), task_id=3, attempt_id=11, shard_target_bytes=target, zstd_level=1
    )
    payloads = [os.urandom(40_000) for _ in range(4)]  # incompressible: stored ≈ raw
    warm = ShardWriter(str(tmp_path / "warm"), task_id=0, attempt_id=0)  # first-use imports
    (tmp_path / "warm").mkdir()
    warm.add(_ref(0, "P", 10), b"x" * 10)
    warm.close()
    tracemalloc.start()
    n = 0
    for p in range(8):
        w.starts_patient_fitting(10 * 40_000)
        for _i in range(10):
            w.add(_ref(n, f"P{p}", 40_000), payloads[n % 4])
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
        w = ShardWriter(str(stage), task_id=t, attempt_id=t)
        for i in range(3):
            w.add(RecordRef("/x.zip", f"{patient}/{i}", len(data), zlib.crc32(data), f"{t}.{i}",
                            f"ser-{patient}", "st", patient, "CT", i), data)  # fmt: skip
        segs += w.close()
    packs = merge_segments(segs, str(tmp_path), "ds", "r1", pack_target_bytes=10**9)
    assert len(packs) == 1 and packs[0].published_by == "concat" and packs[0].num_records == 9
    pk = VariableRecordPack(packs[0].path)
    assert [pk.read(i) for i in range(9)] == [ct] * 3 + [mr] * 3 + [ct] * 3
    assert pk.slide_table.column("slide_id").to_pylist() == ["ser-P1", "ser-P2", "ser-P3"]
    assert pk.index_table.column("slide_idx").to_pylist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # big segments (≥ half the target) are renamed, not copied
    w = ShardWriter(str(stage), task_id=9, attempt_id=9)
    w.add(RecordRef("/x.zip", "a", len(ct), zlib.crc32(ct), "9.1", "s", "st", "P9", "CT", 1), ct)
    seg = w.close()[0]
    ino = os.stat(seg.path).st_ino
    [big] = merge_segments([seg], str(tmp_path), "ds", "r2", pack_target_bytes=seg.data_bytes)
    assert big.published_by == "rename" and os.stat(big.path).st_ino == ino


def test_task_reports_unreadable_members(tmp_path: Path, testdata_dir: Path) -> None:
    ct = (testdata_dir / "CT_small.dcm").read_bytes()
    z = write_zip(tmp_path / "a.zip", {"ok.dcm": ct})
    refs = [
        RecordRef(str(z), "ok.dcm", len(ct), zlib.crc32(ct), "1", "s", "st", "P", "CT", 1),
        RecordRef(str(z), "gone.dcm", 10, 0, "2", "s", "st", "P", "CT", 2),
        RecordRef(
            str(z), "ok.dcm", len(ct), 12345, "3", "s", "st", "P", "CT", 3
        ),  # changed since scan
    ]
    stage = tmp_path / "stage"
    spec = write_task_spec(str(stage), 0, refs)
    result = run_task(spec, str(stage), task_id=0, attempt_id=5)
    assert result.packed == 1 and [e.source_member for e in result.errors] == ["gone.dcm", "ok.dcm"]
    assert all(e.stage == "pack" and str(z) in e.error for e in result.errors)


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


@pytest.mark.spark
def test_build_round_trip_with_retried_task(spark, corpus, tmp_path: Path) -> None:
    df = spark.read.format("zipdcm").load(str(corpus.root))
    out = tmp_path / "out"
    result = iac_spark.build_packs(
        df, str(out), dataset="t", shard_target_bytes=150_000, pack_target_bytes=400_000,
        num_tasks=3, _fail_task_attempts=[0],
    )  # fmt: skip
    assert result.num_records == corpus.dicom_members
    assert len(result.duplicates) == 1 and result.duplicates[0].member == "copy.dcm"
    assert [e.source_member for e in result.errors] == ["broken.dcm"]
    # the failed first attempt of task 0 left nothing: no staging, only the result's packs
    assert not (out / "_staging").exists()
    assert sorted(os.listdir(out / "packs" / "t")) == sorted(
        Path(p.path).name for p in result.packs
    )
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
        keys = [
            (
                r["patient_id"],
                r["study_instance_uid"],
                r["series_instance_uid"],
                r["instance_number"],
            )
            for r in index
        ]
        assert keys == sorted(keys)
    assert len(seen) == corpus.dicom_members
    for i, a in enumerate(patients_by_pack):  # patients never straddle packs
        for b in patients_by_pack[i + 1 :]:
            assert not a & b


@pytest.mark.spark
def test_failing_build_publishes_nothing(spark, corpus, tmp_path: Path) -> None:
    df = spark.read.format("zipdcm").load(str(corpus.root))
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="published nothing"):
        iac_spark.build_packs(df, str(out), dataset="t", num_tasks=2, _fail_task_attempts={1: 5})
    assert not (out / "packs" / "t").exists() or os.listdir(out / "packs" / "t") == []
    assert not (out / "_staging").exists()


@pytest.mark.spark
def test_iac_source_reads_packs_back(spark, corpus, tmp_path: Path) -> None:
    df = spark.read.format("zipdcm").option("content", "true").load(str(corpus.root))
    result = iac_spark.build_packs(df, str(tmp_path / "out"), dataset="t")
    back = spark.read.format("iac").option("content", "true").load(str(tmp_path / "out" / "packs"))
    assert back.count() == result.num_records
    rows = back.select("source_path", "source_member", "content", "pack_path", "row").collect()
    originals = {
        (r.path, r.member): r.content for r in df.select("path", "member", "content").collect()
    }
    for r in rows:
        assert r.content == originals[(r.source_path, r.source_member)]
    assert {r.pack_path for r in rows} == {p.path for p in result.packs}
