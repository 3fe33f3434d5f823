"""The Delta catalog: real Delta tables, real packs, no mocks.

Two Spark builds (module fixture ``stage``) cover the end-to-end path: a first build, then
a second over the same folder after adding a zip (with one instance already catalogued),
a bare text file, and rewriting one zip with one member changed; then a rerun that must
start no Spark job. Everything else builds real packs with the same build core on the local
executor (``local_build``: :func:`iac_spark.packing.run_build`, no JVM) and commits them
directly.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from iatro.iac import PackReader

import iac_spark.catalog as cat
from iac_spark.catalog.rows import catalog_rows
from iac_spark.catalog.schema import SCHEMAS, TIMESTAMP
from iac_spark.catalog.store import DeltaRsStore
from iac_spark.catalog.views import VIEWS
from iac_spark.errors import CatalogError, VerifyError
from iac_spark.inputs import Source, discover, survey
from iac_spark.packing import BuildResult, LocalExecutor, new_run_id, run_build
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

from .helpers import write_zip

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def local_build(
    paths: list[str], out: str, *, dataset: str = "t", known: pa.Table | None = None
) -> tuple[BuildResult, list[Source]]:
    """The real build core on the local executor; the scan files stay for the commit."""
    sources = survey(discover(paths))
    result = run_build(
        sources, out, executor=LocalExecutor(2), dataset=dataset, known=known,
        scan_options={"promoted": True}, keep_staging=True,
    )  # fmt: skip
    return result, sources


def zip_member_count(path: str) -> int:
    """Members a user sees in a zip: file entries, nested zips opened (one level)."""
    n = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if info.filename.lower().endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(zf.read(info))) as inner:
                    n += sum(1 for i in inner.infolist() if not i.is_dir())
            else:
                n += 1
    return n


def expected_members(path: str) -> int:
    if not path.endswith(".zip"):
        return 1
    try:
        return zip_member_count(path)
    except zipfile.BadZipFile:
        return -1  # unreadable: the caller knows what to expect


def live(records: pa.Table) -> pa.Table:
    return records.filter(pc.invert(records.column("retired")))


def accounting(c: cat.Catalog) -> dict[str, tuple[int, int, int]]:
    """Per live source: (records + errors(scan/pack/duplicate) + skipped, sources.members, expected)."""
    recs, errs = c.records(), c.errors()
    out = {}
    for s in c.sources().to_pylist():
        if s["superseded"]:
            continue
        key = (s["source_path"], s["run_id"])
        n_recs = sum(
            1
            for r in recs.select(["source_path", "run_id"]).to_pylist()
            if (r["source_path"], r["run_id"]) == key
        )
        n_errs = sum(
            1
            for e in errs.to_pylist()
            if (e["source_path"], e["run_id"]) == key
            and e["stage"] in ("scan", "pack", "duplicate")
        )
        out[s["source_path"]] = (
            n_recs + n_errs + s["skipped"],
            s["members"],
            expected_members(s["source_path"]),
        )
    return out


def modality_counts_from_packs(out: str, packs: pa.Table) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for p in packs.column("path").to_pylist():
        reader = PackReader(os.path.join(out, p))
        try:
            counts.update(reader.index_table.column("modality").to_pylist())
        finally:
            reader.close()
    return dict(counts)


def rewrite_with_changed_member(path: Path) -> str:
    """Rewrite a zip in place (same path, same names) with the last byte of one DICOM member flipped."""
    with zipfile.ZipFile(path) as zf:
        items = [(i.filename, zf.read(i)) for i in zf.infolist()]
    target = next(name for name, _ in items if name.endswith(".dcm"))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            if name == target:
                data = data[:-1] + bytes([data[-1] ^ 0x01])
            zf.writestr(name, data)
    os.replace(tmp, path)
    return target


# --------------------------------------------------------------------------------------
# the two Spark builds
# --------------------------------------------------------------------------------------


@dataclass
class Stage:
    data: Path
    out: str
    r1: cat.CatalogBuildResult
    r2: cat.CatalogBuildResult
    r3: cat.CatalogBuildResult
    rerun_jobs: list[int]
    between: datetime
    copy1: str  # OUT right after build 1 (for verify / vacuum)
    changed_zip: str
    changed_member: str
    new_zip: str
    dup_source: str  # "<zip>!<member>" of the instance copied into the new zip
    members1: int


@pytest.fixture(scope="module")
def stage(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Stage:
    root = tmp_path_factory.mktemp("catalog")
    data = root / "data"
    corpus = generate_corpus(
        data, CorpusSpec(patients=3, ct_slices=4, mr_slices=3, ct_size=64, mr_size=32, seed=11)
    )
    out = str(root / "out")
    r1 = cat.build(spark, [str(data)], out, dataset="t")
    copy1 = str(root / "copy1")
    shutil.copytree(out, copy1)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)

    # build 2: a new zip (one instance identical to a catalogued one), a bare text file, a changed zip
    extra = generate_corpus(
        root / "extra",
        CorpusSpec(patients=1, ct_slices=2, mr_slices=1, ct_size=64, mr_size=32, seed=99),
    )
    with zipfile.ZipFile(extra.zips[0]) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    donor = data / "PAT-0001.zip"
    with zipfile.ZipFile(donor) as zf:
        donor_member = next(n for n in zf.namelist() if n.endswith(".dcm"))
        members["dup/copy.dcm"] = zf.read(donor_member)
    new_zip = write_zip(data / "NEW-0000.zip", members)
    (data / "notes.txt").write_text("not a DICOM file\n")
    changed = data / "PAT-0002.zip"
    changed_member = rewrite_with_changed_member(changed)
    r2 = cat.build(spark, [str(data)], out, dataset="t")

    # rerun over the same folder: nothing new, and no Spark job may start
    sc = spark.sparkContext
    sc.setJobGroup("iac-catalog-rerun", "rerun must not start jobs")
    try:
        r3 = cat.build(spark, [str(data)], out, dataset="t")
        jobs = list(sc.statusTracker().getJobIdsForGroup("iac-catalog-rerun"))
    finally:
        for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
            sc.setLocalProperty(key, None)  # type: ignore[arg-type]
    return Stage(
        data=data, out=out, r1=r1, r2=r2, r3=r3, rerun_jobs=jobs, between=between, copy1=copy1,
        changed_zip=str(changed), changed_member=changed_member, new_zip=str(new_zip),
        dup_source=f"{donor}!{donor_member}", members1=corpus.dicom_members,
    )  # fmt: skip


CONTRACT = {
    "packs": ["pack_id", "dataset", "path", "payload_type", "codec", "num_records", "num_patients",
              "num_series", "data_bytes", "file_bytes", "file_crc32c", "run_id", "created_at"],
    "records": ["pack_id", "row", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
                "patient_id", "modality", "instance_number", "offset", "length", "crc32", "raw_length",
                "raw_crc32", "source_path", "source_member", "run_id", "retired", "retired_by_run",
                "study_date", "series_number", "study_description", "series_description",
                "body_part_examined", "patient_sex", "patient_age", "manufacturer",
                "manufacturer_model_name", "slice_thickness", "spacing_between_slices", "pixel_spacing",
                "image_position_patient", "image_orientation_patient", "rows", "columns",
                "number_of_frames", "bits_allocated", "photometric_interpretation",
                "transfer_syntax_uid", "sop_class_uid", "image_type", "meta"],
    "documents": ["pack_id", "row", "patient_id", "institution", "doc_id", "doc_type", "encounter",
                  "doc_timestamp", "n_chars", "encoding", "source_path", "source_member", "raw_crc32",
                  "run_id", "retired", "retired_by_run"],
    "sources": ["source_path", "size", "mtime", "fingerprint", "run_id", "status", "members", "packed",
                "duplicates", "errors", "skipped", "superseded", "superseded_by_run"],
    "errors": ["run_id", "source_path", "source_member", "stage", "error", "at"],
    "runs": ["run_id", "dataset", "started_at", "committed_at", "num_packs", "num_records", "num_errors",
             "num_duplicates", "num_conflicts", "status"],
}  # fmt: skip


def test_schema_contract(stage: Stage) -> None:
    for name, columns in CONTRACT.items():
        dt = DeltaTable(os.path.join(stage.out, "_catalog", name))
        schema = pa.schema(dt.schema().to_arrow())
        assert schema.names == columns
        assert schema.equals(SCHEMAS[name]), name
        protocol = dt.protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
        # no table features at all: no deletion vectors, nothing DuckDB/Polars could not read
        assert not protocol.reader_features and not protocol.writer_features
        plain = (pa.string(), pa.int64(), pa.int32(), pa.bool_(), pa.float64(), pa.date32(), TIMESTAMP,
                 pa.list_(pa.float64()), pa.list_(pa.string()))  # fmt: skip
        for f in schema:
            assert f.type in plain, (name, f)
    c = cat.open(stage.out)
    for name in CONTRACT:
        assert c.table(name).schema.equals(SCHEMAS[name])


def test_first_build_sql_matches_packs(stage: Stage) -> None:
    r1 = stage.r1
    assert (r1.new_sources, r1.changed_sources, r1.unchanged_sources) == (3, 0, 0)
    # one LICENSE.txt per zip is skipped
    assert r1.records == stage.members1 and r1.errors == 0 and r1.skipped == 3
    c = cat.open(stage.out, as_of=r1.catalog_version)
    assert c.committed_runs == {r1.run_id}
    got = cat.sql(
        stage.out,
        "SELECT modality, count(*) AS n FROM records GROUP BY modality",
        as_of=r1.catalog_version,
    ).to_pylist()
    assert {r["modality"]: r["n"] for r in got} == modality_counts_from_packs(stage.out, c.packs())
    assert r1.run_id in r1.summary_table()


def test_rerun_adds_nothing_and_starts_no_spark_job(stage: Stage) -> None:
    r3 = stage.r3
    assert r3.nothing_to_do and r3.new_packs == 0 and r3.records == 0
    # 3 original zips (one of them changed in build 2) + the new zip + notes.txt
    assert r3.unchanged_sources == 5
    assert r3.catalog_version == stage.r2.catalog_version
    assert stage.rerun_jobs == []
    assert "nothing to do" in r3.summary_table()


def test_incremental_processes_only_new_and_changed(stage: Stage) -> None:
    r2 = stage.r2
    assert (r2.new_sources, r2.changed_sources, r2.unchanged_sources) == (2, 1, 2)
    assert r2.build_result is not None
    scanned = {p for p, t in r2.build_result.sources.items() if t.members - t.skipped}
    assert scanned == {stage.new_zip, stage.changed_zip}  # notes.txt is skipped by the scan
    c = cat.open(stage.out)
    run2_sources = {s["source_path"] for s in c.sources().to_pylist() if s["run_id"] == r2.run_id}
    assert run2_sources == {stage.new_zip, stage.changed_zip, str(stage.data / "notes.txt")}
    notes = next(s for s in c.sources().to_pylist() if s["source_path"].endswith("notes.txt"))
    assert (notes["members"], notes["skipped"], notes["status"]) == (1, 1, "ingested")
    assert [r["run_id"] for r in c.runs().to_pylist()] == [stage.r1.run_id, r2.run_id]


def test_changed_source_is_reingested_and_old_records_retired(stage: Stage) -> None:
    c = cat.open(stage.out)
    recs = c.records()
    per_uid = Counter(live(recs).column("sop_instance_uid").to_pylist())
    assert per_uid and set(per_uid.values()) == {1}
    old = [
        r
        for r in recs.to_pylist()
        if r["source_path"] == stage.changed_zip and r["run_id"] == stage.r1.run_id
    ]
    assert len(old) == 7 and all(
        r["retired"] and r["retired_by_run"] == stage.r2.run_id for r in old
    )
    assert stage.r2.retired_records == 7
    with zipfile.ZipFile(stage.changed_zip) as zf:
        new_crc = zf.getinfo(stage.changed_member).CRC
    [now] = [
        r
        for r in live(recs).to_pylist()
        if r["source_path"] == stage.changed_zip and r["source_member"] == stage.changed_member
    ]
    [before] = [r for r in old if r["source_member"] == stage.changed_member]
    assert (
        now["raw_crc32"] == new_crc != before["raw_crc32"]
        and now["sop_instance_uid"] == before["sop_instance_uid"]
    )
    sources = [s for s in c.sources().to_pylist() if s["source_path"] == stage.changed_zip]
    assert sorted((s["run_id"], s["superseded"]) for s in sources) == [
        (stage.r1.run_id, True),
        (stage.r2.run_id, False),
    ]
    # time travel: before build 2 nothing was retired
    then = cat.open(stage.out, as_of=stage.r1.catalog_version).records()
    assert then.num_rows == stage.members1 and not any(then.column("retired").to_pylist())
    sql_live = cat.sql(
        stage.out, "SELECT count(*) AS n FROM records WHERE NOT retired"
    ).to_pylist()[0]["n"]
    assert sql_live == live(recs).num_rows


def test_lookup_by_sop_instance_uid_finds_the_live_record(stage: Stage) -> None:
    c = cat.open(stage.out)
    recs = c.records().to_pylist()
    [retired] = {r["sop_instance_uid"] for r in recs if r["retired"]} & {
        r["sop_instance_uid"] for r in recs if r["source_member"] == stage.changed_member
    }
    some = sorted({r["sop_instance_uid"] for r in recs if not r["retired"]})[:5]
    got = c.lookup([*some, retired, "9.9.9"]).to_pylist()
    want = [
        {"sop_instance_uid": r["sop_instance_uid"], "pack_id": r["pack_id"], "row": r["row"]}
        for r in sorted(recs, key=lambda r: (r["pack_id"], r["row"]))
        if not r["retired"] and r["sop_instance_uid"] in {*some, retired}
    ]
    assert got == want and len(got) == 6  # the changed member: its live copy only; 9.9.9: none
    assert c.lookup(some[0]).to_pylist() == [w for w in want if w["sop_instance_uid"] == some[0]]
    assert c.lookup([]).num_rows == 0
    # at the first version the retired copy is the live one
    then = cat.open(stage.out, as_of=stage.r1.catalog_version).lookup(retired).to_pylist()
    assert [h["pack_id"] for h in then] == [
        r["pack_id"] for r in recs if r["retired"] and r["sop_instance_uid"] == retired
    ]


def test_duplicate_across_builds_is_an_error_row_not_a_record(stage: Stage) -> None:
    c = cat.open(stage.out)
    dups = [e for e in c.errors().to_pylist() if e["stage"] == "duplicate"]
    assert [(d["source_path"], d["source_member"]) for d in dups] == [
        (stage.new_zip, "dup/copy.dcm")
    ]
    assert stage.dup_source in dups[0]["error"] and "pack " in dups[0]["error"]
    assert not [r for r in c.records().to_pylist() if r["source_member"] == "dup/copy.dcm"]
    assert stage.r2.duplicates == 1
    assert c.runs().to_pylist()[-1]["num_duplicates"] == 1


def test_every_scanned_member_is_accounted_for(stage: Stage) -> None:
    table = accounting(cat.open(stage.out))
    assert len(table) == 5
    for path, (accounted, members, expected) in table.items():
        assert accounted == members == expected, path


def test_as_of_version_and_time(stage: Stage) -> None:
    v1, v2 = stage.r1.catalog_version, stage.r2.catalog_version
    assert v1 is not None and v2 is not None and v2 > v1
    by_time = cat.open(stage.out, as_of=stage.between)
    assert by_time.version == v1 and by_time.committed_runs == {stage.r1.run_id}
    assert cat.open(stage.out, as_of=0).records().num_rows == 0  # version 0: the empty catalog
    n = cat.sql(stage.out, "SELECT count(*) AS n FROM sources", as_of=stage.between).to_pylist()[0][
        "n"
    ]
    assert n == 3
    with pytest.raises(CatalogError):
        cat.open(stage.out, as_of=v2 + 100)


def test_register_views_in_spark(stage: Stage, spark: Any) -> None:
    frames = cat.register_views(spark, stage.out, prefix="iac_")
    assert set(frames) == set(VIEWS) == {*CONTRACT, "series", "studies"}
    got = {
        r["modality"]: r["n"]
        for r in spark.sql(
            "SELECT modality, count(*) AS n FROM iac_records WHERE NOT retired GROUP BY modality"
        ).collect()
    }
    want = cat.sql(
        stage.out, "SELECT modality, count(*) AS n FROM records WHERE NOT retired GROUP BY modality"
    ).to_pylist()
    assert got == {r["modality"]: r["n"] for r in want}
    assert spark.sql("SELECT count(*) FROM iac_runs").collect()[0][0] == 2


def test_verify_clean_then_flipped_byte_then_missing_pack(stage: Stage, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    shutil.copytree(stage.copy1, out)
    report = cat.verify(out, decode=True)
    assert report.ok, str(report)
    assert report.packs_checked >= 1 and report.records_checked == stage.members1
    pack = cat.open(out).packs().to_pylist()[0]
    path = os.path.join(out, pack["path"])
    reader = PackReader(path)
    data_offset = int(reader.header["data_offset"])
    row = 3
    offset = int(reader.index_table.column("offset")[row].as_py())
    reader.close()
    with open(path, "r+b") as fh:
        fh.seek(data_offset + offset + 7)
        b = fh.read(1)
        fh.seek(data_offset + offset + 7)
        fh.write(bytes([b[0] ^ 0xFF]))
    report = cat.verify(out)
    assert not report.ok and len(report.problems) == 1
    [problem] = report.problems
    assert pack["path"] in problem and f"row {row}:" in problem and "crc32" in problem
    assert pack["path"] in str(report) and "PROBLEM" in str(report)
    with pytest.raises(VerifyError):
        report.raise_for_problems()
    os.remove(path)
    report = cat.verify(out)
    assert any(pack["path"] in p and "missing" in p for p in report.problems)


def test_vacuum_removes_orphans_and_stale_staging_only(stage: Stage, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    shutil.copytree(stage.copy1, out)
    real = os.path.join(out, cat.open(out).packs().column("path")[0].as_py())
    failed_run, running_run = new_run_id(), new_run_id()
    cat.record_failed_run(out, failed_run, "t", started_at=datetime.now(timezone.utc))
    orphan = os.path.join(os.path.dirname(real), f"{failed_run}-0000.iac")
    young = os.path.join(os.path.dirname(real), f"{running_run}-0000.iac")  # still running
    shutil.copy(real, orphan)
    shutil.copy(real, young)
    stale, running = Path(out, "_staging", "old-run"), Path(out, "_staging", running_run)
    for d in (stale, running):
        (d / "plan").mkdir(parents=True)
        (d / "plan" / "task-00000.json").write_text("{}")
    old = time.time() - 7200
    for p in (stale / "plan" / "task-00000.json", stale / "plan", stale):
        os.utime(p, (old, old))

    dry = cat.vacuum(out, dry_run=True)
    assert dry.orphan_packs == [orphan] and dry.stale_staging == [str(stale)]
    assert sorted(dry.kept) == sorted([young, str(running)])
    assert os.path.exists(orphan) and stale.exists()  # dry run deletes nothing
    done = cat.vacuum(out)
    assert done.removed == dry.removed
    assert not os.path.exists(orphan) and not stale.exists()
    assert os.path.exists(young) and running.exists() and os.path.exists(real)
    assert cat.verify(out).ok
    assert "orphan" in str(done)


# --------------------------------------------------------------------------------------
# commits without Spark: concurrency, crash safety, odd inputs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("local")
    corpus = generate_corpus(
        root, CorpusSpec(patients=4, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32, seed=5)
    )
    return list(corpus.zips)


def _check_consistent(out: str, runs: int, *, unique_uids: bool = True) -> cat.Catalog:
    c = cat.open(out)
    assert len(c.committed_runs) == runs
    run_rows = c.runs().to_pylist()
    assert sum(r["num_records"] for r in run_rows) == c.records().num_rows
    assert sum(r["num_packs"] for r in run_rows) == c.packs().num_rows
    if unique_uids:
        assert set(Counter(live(c.records()).column("sop_instance_uid").to_pylist()).values()) == {
            1
        }
    assert cat.verify(out).ok
    return c


def test_concurrent_commits_from_threads(local_zips: list[Path], tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    builds = [local_build([str(z)], out) for z in local_zips]
    barrier = threading.Barrier(len(builds))
    results: list[Any] = [None] * len(builds)

    def commit(i: int) -> None:
        result, files = builds[i]
        barrier.wait()  # all start on a catalog that does not exist yet: the tables' creation races too
        try:
            results[i] = cat.commit_build(out, result, files)
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(builds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, cat.CommitResult) for r in results), results
    assert sorted(r.version for r in results) == list(range(1, len(builds) + 1))
    c = _check_consistent(out, len(builds))
    assert c.records().num_rows == sum(b[0].num_records for b in builds)
    assert c.sources().num_rows == len(builds)


_COMMIT_SCRIPT = """
import os, pickle, sys, time
import iac_spark.catalog as cat
result, files, retire = pickle.load(open(sys.argv[1], "rb"))
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
print(cat.commit_build(result.out, result, files, retire_paths=retire).version)
"""


def test_concurrent_commits_from_processes_with_a_retirement(
    local_zips: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    x, y = data / "x.zip", data / "y.zip"
    shutil.copy(local_zips[0], x)
    shutil.copy(local_zips[1], y)
    out = str(tmp_path / "out")
    first, files = local_build([str(x)], out)
    cat.commit_build(out, first, files)
    rewrite_with_changed_member(x)
    plan = cat.plan_sources(out, survey(discover([str(x), str(y)])))
    assert [f.path for f in plan.changed] == [str(x)] and [f.path for f in plan.new] == [str(y)]
    again = local_build([str(x)], out, known=cat.known_items(out, exclude_paths=plan.retire_paths))
    other = local_build([str(y)], out, known=cat.known_items(out))
    assert again[0].num_records == first.num_records and not again[0].duplicates.num_rows
    go = str(tmp_path / "go")
    procs = []
    for i, (payload, retire) in enumerate(((again, [str(x)]), (other, []))):
        job = str(tmp_path / f"job{i}.pkl")
        with open(job, "wb") as fh:
            pickle.dump((payload[0], payload[1], retire), fh)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _COMMIT_SCRIPT, job, go],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.time() + 60
    while (
        not all(os.path.exists(str(tmp_path / f"job{i}.pkl.ready")) for i in range(2))
        and time.time() < deadline
    ):
        time.sleep(0.01)
    Path(go).touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    c = _check_consistent(out, 3)
    retired = c.records().filter(c.records().column("retired"))
    assert retired.num_rows == first.num_records
    assert set(retired.column("retired_by_run").to_pylist()) == {again[0].run_id}
    assert c.records().num_rows == first.num_records + again[0].num_records + other[0].num_records


def test_same_source_ingested_by_racing_builds_keeps_one_live_copy(
    local_zips: list[Path], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    files = survey(discover([str(local_zips[1])]))
    plan = cat.plan_sources(out, files)  # both builds plan before either commits
    assert plan.new == files and plan.catalog_version is None
    winner, _ = local_build([str(local_zips[1])], out)
    late, _ = local_build([str(local_zips[1])], out)
    cat.commit_build(out, winner, files, planned_version=-1)
    commit = cat.commit_build(out, late, files, planned_version=-1)
    assert commit.retired_records == winner.num_records and commit.superseded_sources == 1
    c = _check_consistent(out, 2)
    assert set(live(c.records()).column("run_id").to_pylist()) == {late.run_id}
    assert [s["run_id"] for s in c.sources().to_pylist() if not s["superseded"]] == [late.run_id]


def test_half_written_build_is_invisible_and_commit_is_retryable(
    local_zips: list[Path], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    result, files = local_build([str(local_zips[2])], out)
    store = DeltaRsStore(out)
    store.ensure()
    # a crash after the first appends: records and sources of the run exist, no runs row
    rows = catalog_rows(result, files)
    store.append("records", rows.records, run_id=result.run_id)
    store.append("sources", rows.sources, run_id=result.run_id)
    c = cat.open(out)
    assert c.records().num_rows == 0 and c.sources().num_rows == 0 and c.version == 0
    assert cat.sql(out, "SELECT count(*) AS n FROM records").to_pylist()[0]["n"] == 0
    assert DeltaTable(store.location("records")).to_pyarrow_table().num_rows == result.num_records
    assert [s.path for s in cat.plan_sources(out, files).new] == [s.path for s in files]
    # committing the same run again replaces the leftovers instead of duplicating them
    committed = cat.commit_build(out, result, files)
    assert committed.version == 1
    c = _check_consistent(out, 1)
    assert c.records().num_rows == result.num_records and c.sources().num_rows == 1
    with pytest.raises(CatalogError, match="already recorded"):
        cat.commit_build(out, result, files)
    assert cat.open(out).records().num_rows == result.num_records


def test_odd_inputs_conflicts_and_failed_sources(
    local_zips: list[Path], tmp_path: Path, testdata_dir: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dcm = (testdata_dir / "CT_small.dcm").read_bytes()
    altered = dcm[:-1] + bytes([dcm[-1] ^ 0x01])  # same SOPInstanceUID, different bytes: a conflict
    write_zip(data / "a.zip", {"LICENSE.txt": b"CC0", "s/ct.dcm": dcm, "s/junk.dcm": b"\x00" * 300})
    nested = data / "inner.zip"
    write_zip(nested, {"deep/ct.dcm": altered, "README.md": b"# hi"})
    write_zip(data / "b.zip", {"inner.zip": nested.read_bytes(), "notes.txt": b"x"})
    nested.unlink()
    shutil.copy(local_zips[3], data / "c.zip")
    (data / "bare.dcm").write_bytes((testdata_dir / "MR_small.dcm").read_bytes())
    (data / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip archive")
    out = str(tmp_path / "out")
    result, files = local_build([str(data)], out)
    commit = cat.commit_build(out, result, files)
    assert commit.num_conflicts == 1 and commit.num_sources == 5
    c = _check_consistent(out, 1, unique_uids=False)  # the conflicting instance is live twice
    errs = c.errors().to_pylist()
    conflicts = [e for e in errs if e["stage"] == "conflict"]
    assert {(e["source_path"], e["source_member"]) for e in conflicts} == {
        (str(data / "a.zip"), "s/ct.dcm"),
        (str(data / "b.zip"), "inner.zip!deep/ct.dcm"),
    }
    assert all("a.zip" in e["error"] and "b.zip" in e["error"] for e in conflicts)
    uid_rows = [
        r
        for r in c.records().to_pylist()
        if r["source_member"] in ("s/ct.dcm", "inner.zip!deep/ct.dcm")
    ]
    assert len(uid_rows) == 2  # both conflicting copies are packed
    sources = {s["source_path"]: s for s in c.sources().to_pylist()}
    assert sources[str(data / "broken.zip")]["status"] == "failed"
    a, b = sources[str(data / "a.zip")], sources[str(data / "b.zip")]
    assert a["errors"] == 1 and a["skipped"] == 1
    assert b["skipped"] == 2  # notes.txt, and README.md inside the nested zip
    for path, (accounted, members, expected) in accounting(c).items():
        if path.endswith("broken.zip"):
            expected = 1  # one error row for the unreadable archive
        assert accounted == members == expected, path
    # a failed source is not retried unless asked (or until the file changes)
    plan = cat.plan_sources(out, survey(discover([str(data)])))
    assert not plan.new and not plan.changed
    retry = cat.plan_sources(out, survey(discover([str(data)])), retry_failed=True)
    assert [f.path for f in retry.changed] == [str(data / "broken.zip")]
    assert cat.verify(out, decode=True).ok


_NO_DELTA_SCRIPT = """
import sys
import iac_spark, iac_spark.catalog as cat
from iac_spark.errors import CatalogError, DeltaJarsNotFoundError
out = sys.argv[1]
spark = iac_spark.local_session("local[1]", app_name="iac_spark-no-delta")
assert not cat.has_delta(spark)
refusals = [
    lambda: cat.catalog_store(out, spark=spark, engine="spark"),
    lambda: cat.catalog_store(out, spark=spark, catalog_name="main.imaging.iac"),
    lambda: cat.register_views(spark, out, engine="spark"),
    lambda: cat.register_views(spark, out, catalog_name="main.imaging.iac"),
]
for i, refused in enumerate(refusals):
    try:
        refused()
    except CatalogError as exc:
        assert "Delta-enabled SparkSession" in str(exc), exc
    else:
        raise AssertionError(f"refusal {i} did not raise")
try:
    iac_spark.local_session(delta=True)  # too late: this JVM started without the jars
except DeltaJarsNotFoundError as exc:
    assert "already runs" in str(exc), exc
else:
    raise AssertionError("local_session(delta=True) reused a session without Delta")
frames = cat.register_views(spark, out)  # auto: the arrow engine, no jars needed
print(frames["runs"].count())
spark.stop()
"""


def test_spark_engine_is_refused_without_delta(local_zips: list[Path], tmp_path: Path) -> None:
    # the suite's session has Delta whenever the jars are cached, and a JVM cannot drop them:
    # the refusals run here without a session (the store is chosen before any Spark call) and
    # on a real session without Delta in a subprocess
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: Spark tests need Java 17")
    out = str(tmp_path / "out")
    result, files = local_build([str(local_zips[0])], out)
    with pytest.raises(CatalogError, match="Delta-enabled SparkSession"):
        cat.commit_build(out, result, files, engine="spark")
    with pytest.raises(CatalogError, match="Delta-enabled SparkSession"):
        cat.commit_build(out, result, files, catalog_name="main.imaging.iac")
    assert not DeltaRsStore(out).exists()  # nothing was written
    cat.commit_build(out, result, files)
    done = subprocess.run(
        [sys.executable, "-c", _NO_DELTA_SCRIPT, out],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "1"


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=repr)


def _rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


@pytest.mark.delta_spark
def test_delta_spark_path(delta_spark: Any, local_zips: list[Path], tmp_path: Path) -> None:
    # the catalog written by Spark Delta end to end: a first build, then a changed source
    # (its old records retired by an UPDATE) and a new one; delta-rs reads the result
    spark = delta_spark
    data = tmp_path / "data"
    data.mkdir()
    x, y = data / "x.zip", data / "y.zip"
    shutil.copy(local_zips[0], x)
    shutil.copy(local_zips[1], y)
    out = str(tmp_path / "out")
    store = cat.SparkDeltaStore(spark, out)
    first, files = local_build([str(x)], out)
    c1 = cat.commit_build(out, first, files, engine="spark", spark=spark)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    rewrite_with_changed_member(x)
    plan = cat.plan_sources(out, survey(discover([str(x), str(y)])), store=store)
    assert [f.path for f in plan.changed] == [str(x)] and [f.path for f in plan.new] == [str(y)]
    known = cat.known_items(out, exclude_paths=plan.retire_paths, store=store)
    again, again_files = local_build([str(x), str(y)], out, known=known)
    c2 = cat.commit_build(
        out, again, again_files, retire_paths=plan.retire_paths,
        planned_version=plan.catalog_version, engine="spark", spark=spark,
    )  # fmt: skip
    assert c2.retired_records == first.num_records and c2.superseded_sources == 1
    c = _check_consistent(out, 2)  # delta-rs reads what Spark Delta wrote, retirements included
    assert c.records().num_rows == first.num_records + again.num_records
    retired = c.records().filter(c.records().column("retired"))
    assert retired.num_rows == first.num_records
    assert set(retired.column("retired_by_run").to_pylist()) == {again.run_id}
    now = cat.open(out, store=store)  # the same committed view through Spark Delta
    assert now.version == c.version == c2.version and now.committed_runs == c.committed_runs
    for name in CONTRACT:
        assert _sorted(now.table(name)) == _sorted(c.table(name)), name
    # time travel through Spark Delta, by version and by time: before the retirement
    for as_of in (c1.version, between):
        old = cat.open(out, as_of=as_of, store=store)
        assert old.committed_runs == {first.run_id}, as_of
        assert old.records().num_rows == first.num_records
        assert not any(old.records().column("retired").to_pylist())
    frames = cat.register_views(spark, out, engine="spark", prefix="d_")
    assert frames["records"].count() == c.records().num_rows
    assert spark.sql("SELECT count(*) FROM d_runs").collect()[0][0] == 2


@pytest.mark.delta_spark
def test_delta_spark_reads_what_delta_rs_wrote(
    delta_spark: Any, local_zips: list[Path], tmp_path: Path
) -> None:
    spark = delta_spark
    data = tmp_path / "data"
    data.mkdir()
    x = data / "x.zip"
    shutil.copy(local_zips[2], x)
    out = str(tmp_path / "out")
    first, files = local_build([str(x)], out)
    cat.commit_build(out, first, files)
    rewrite_with_changed_member(x)
    plan = cat.plan_sources(out, survey(discover([str(x)])))
    again, files = local_build([str(x)], out)
    cat.commit_build(out, again, files, retire_paths=plan.retire_paths)  # a retirement (UPDATE)
    records = os.path.join(out, "_catalog", "records")
    assert (
        spark.read.format("delta").load(records).count()
        == DeltaTable(records).to_pyarrow_table().num_rows
    )
    # auto picks Spark Delta on this session: lazy scans of the tables, same rows as delta-rs
    by_spark = cat.register_views(spark, out, prefix="auto_")
    by_delta_rs = cat.register_views(spark, out, engine="delta-rs", prefix="rs_")
    assert by_spark["records"].inputFiles() and not by_delta_rs["records"].inputFiles()
    for name in by_delta_rs:
        assert by_spark[name].columns == by_delta_rs[name].columns, name
        assert _rows(by_spark[name]) == _rows(by_delta_rs[name]), name
    retired = spark.sql("SELECT count(*) FROM auto_records WHERE retired").collect()[0][0]
    assert retired == first.num_records


@pytest.mark.delta_spark
def test_delta_spark_text_verify_vacuum_and_racing_builds(
    delta_spark: Any, local_zips: list[Path], tmp_path: Path
) -> None:
    # the Spark Delta catalog (engine="spark") with text packs, verify and vacuum through
    # its store, and two whole builds over overlapping inputs committing at once
    from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

    spark = delta_spark
    out = str(tmp_path / "out")
    store = cat.SparkDeltaStore(spark, out)
    notes = generate_text_corpus(
        tmp_path / "notes", TextCorpusSpec(patients=3, docs_per_patient=3, seed=11)
    )
    text = cat.build(
        spark, [str(notes.root)], out, dataset="notes", kind="text", executor="local",
        engine="spark",
    )  # fmt: skip
    assert text.records == 3
    cat.register_views(spark, out, engine="spark", prefix="t_")
    docs = spark.sql("SELECT doc_id FROM t_documents WHERE NOT retired").collect()
    assert sorted(r[0] for r in docs) == sorted(d.doc_id for d in notes.docs)
    # two builds race into OUT over overlapping inputs: each input packed exactly once
    data = tmp_path / "dicom"
    data.mkdir()
    for z in local_zips[:3]:
        shutil.copy(z, data / z.name)
    inputs = [
        sorted(str(p) for p in data.iterdir())[:2],
        sorted(str(p) for p in data.iterdir())[1:],
    ]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def race(i: int) -> None:
        barrier.wait()
        try:
            results[i] = cat.build(
                spark, inputs[i], out, dataset="ct", executor="local", engine="spark"
            )
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    c = cat.open(out, store=store)
    dicom = pc.is_valid(c.records().column("sop_instance_uid"))
    recs = c.records().filter(dicom)
    uids = Counter(live(recs).column("sop_instance_uid").to_pylist())
    assert uids and set(uids.values()) == {1}
    dicom_members = sum(
        sum(n.endswith(".dcm") for n in zipfile.ZipFile(p).namelist()) for p in data.iterdir()
    )
    assert len(uids) == dicom_members  # each packed once
    live_sources = [s for s in c.sources().to_pylist() if not s["superseded"]]
    ct_sources = [s["source_path"] for s in live_sources if s["source_path"].startswith(str(data))]
    assert sorted(ct_sources) == sorted(str(p) for p in data.iterdir())  # once each
    # verify and vacuum through the Spark Delta store; a stray pack is found and removed
    assert cat.verify(out, store=store, decode=True).ok
    stray = Path(out) / "packs" / "ct" / "stray.iac"
    stray.write_bytes(b"not a pack")
    report = cat.vacuum(out, retention_hours=0, store=store)
    assert report.orphan_packs == [str(stray)] and not stray.exists()
    assert cat.verify(out, store=store).ok
