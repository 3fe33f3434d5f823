"""The zipdcm Spark source end to end: contract, options, modes, mixed inputs, no lost rows."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import pytest

from iac_spark.sources.zipdcm import arrow_schema

from .helpers import write_zip

COLUMNS = tuple(arrow_schema().names)

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory, testdata_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    ct = (testdata_dir / "CT_small.dcm").read_bytes()
    mr = (testdata_dir / "MR_small.dcm").read_bytes()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("in/mr.dcm", mr)
    write_zip(
        root / "a.zip",
        {
            "ct.dcm": ct,
            "mr.DCM": mr,
            "LICENSE.txt": b"x",
            "cut.dcm": ct[:20000],
            "z.dcm": b"",
            "n.zip": inner.getvalue(),
        },
    )
    write_zip(root / "gbk.zip", {"病人/1.dcm": ct}, gbk_names=True)
    (root / "bad.zip").write_bytes(b"PK\x03\x04 broken")
    (root / "bare").mkdir()
    (root / "bare" / "IM1").write_bytes(mr)
    return root


def test_contract_columns(spark, mixed_dir: Path) -> None:
    df = spark.read.format("zipdcm").load(str(mixed_dir))
    assert tuple(df.columns) == COLUMNS
    assert COLUMNS[-2:] == ("status", "error") and COLUMNS[-3] == "meta"
    types = dict(df.dtypes)
    assert types["size"] == types["crc32"] == "bigint" and types["rows"] == "int"
    assert types["has_pixel_data"] == "boolean" and types["meta"] == "string"
    with_content = spark.read.format("zipdcm").option("content", "true").load(str(mixed_dir))
    assert (
        with_content.columns[-1] == "content" and dict(with_content.dtypes)["content"] == "binary"
    )


def test_mixed_inputs_every_member_accounted(spark, mixed_dir: Path) -> None:
    rows = spark.read.format("zipdcm").option("content", "true").load(str(mixed_dir)).collect()
    keys = [(r.path, r.member) for r in rows]
    assert len(keys) == len(set(keys))  # row identity unique
    by = {(Path(r.path).name, r.member): r for r in rows}
    assert set(by) == {
        ("a.zip", "ct.dcm"), ("a.zip", "mr.DCM"), ("a.zip", "cut.dcm"), ("a.zip", "z.dcm"),
        ("a.zip", "n.zip!in/mr.dcm"), ("gbk.zip", "病人/1.dcm"), ("bad.zip", None), ("IM1", None),
    }  # fmt: skip
    assert by[("a.zip", "cut.dcm")].error.startswith("TruncatedMemberError")
    assert by[("a.zip", "z.dcm")].error.startswith("EmptyMemberError")
    assert by[("bad.zip", None)].error.startswith("CorruptZipError")
    for r in rows:
        if r.content is not None:
            assert zlib.crc32(r.content) == r.crc32 and len(r.content) == r.size
        if r.error is None:
            assert json.loads(r.meta)["00080060"]["Value"][0] == r.modality
    zipped = zipfile.ZipFile(mixed_dir / "a.zip")
    assert by[("a.zip", "ct.dcm")].content == zipped.read("ct.dcm")


def test_modes(spark, mixed_dir: Path) -> None:
    dropped = spark.read.format("zipdcm").option("mode", "dropmalformed").load(str(mixed_dir))
    assert dropped.filter("error IS NOT NULL").count() == 0 and dropped.count() == 5
    failfast = spark.read.format("zipdcm").option("mode", "FAILFAST").load(str(mixed_dir / "a.zip"))
    with pytest.raises(Exception, match="TruncatedMemberError"):
        failfast.collect()


def test_options_and_bad_option(spark, mixed_dir: Path) -> None:
    only_bare = spark.read.format("zipdcm").option("pathGlobFilter", "IM*").load(str(mixed_dir))
    assert only_bare.count() == 1
    top = spark.read.format("zipdcm").option("recursiveFileLookup", "false").load(str(mixed_dir))
    assert {Path(r.path).name for r in top.select("path").collect()} == {
        "a.zip",
        "gbk.zip",
        "bad.zip",
    }
    parts = spark.read.format("zipdcm").option("numPartitions", "3").load(str(mixed_dir))
    assert parts.rdd.getNumPartitions() == 3
    small = spark.read.format("zipdcm").option("maxPartitionBytes", "1k").load(str(mixed_dir))
    on_disk = sum(p.stat().st_size for p in mixed_dir.rglob("*") if p.is_file())
    # the count comes from bytes on disk (capped by the members there are to split)
    assert small.rdd.getNumPartitions() > 3 < on_disk // 1024
    assert sorted(map(tuple, small.select("path", "member").collect())) == sorted(
        map(tuple, parts.select("path", "member").collect())
    )
    with pytest.raises(Exception, match="option 'content' must be true or false"):
        spark.read.format("zipdcm").option("content", "sometimes").load(str(mixed_dir)).collect()


def test_generated_corpus_scan(spark, small_corpus) -> None:
    df = spark.read.format("zipdcm").load(str(small_corpus.root))
    assert df.count() == small_corpus.dicom_members
    assert df.filter("error IS NOT NULL").count() == 0
    counts = {r.modality: r["count"] for r in df.groupBy("modality").count().collect()}
    assert set(counts) == {"CT", "MR"}
    assert df.select("sop_instance_uid").distinct().count() == small_corpus.dicom_members


def test_status_include_skipped_and_meta_off(spark, mixed_dir: Path) -> None:
    default = {
        (r.path, r.member): r for r in spark.read.format("zipdcm").load(str(mixed_dir)).collect()
    }
    assert {r.status for r in default.values()} == {"ok", "error"}
    assert all((r.status == "ok") == (r.error is None) for r in default.values())
    full = (
        spark.read.format("zipdcm").option("includeSkipped", "true").load(str(mixed_dir)).collect()
    )
    skipped = [(Path(r.path).name, r.member) for r in full if r.status == "skipped"]
    assert skipped == [("a.zip", "LICENSE.txt")]
    assert all(
        r.error is None and r.sop_instance_uid is None for r in full if r.status == "skipped"
    )
    assert len(full) == len(default) + 1
    lean = {
        (r.path, r.member): r
        for r in spark.read.format("zipdcm").option("meta", "false").load(str(mixed_dir)).collect()
    }
    assert set(lean) == set(default)
    for k, r in lean.items():
        assert r.meta is None and r.sop_instance_uid == default[k].sop_instance_uid
