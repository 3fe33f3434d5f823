"""Pure-Python input layer (no JVM): names, discovery, header parsing, scanning, planning."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest

from iac_spark.dicom.header import is_plainly_not_dicom, parse_header
from iac_spark.dicom.rows import DicomParser
from iac_spark.errors import InputNotFoundError, OptionError, TruncatedMemberError
from iac_spark.inputs.archives import decode_member_name, list_members
from iac_spark.inputs.discover import discover
from iac_spark.inputs.plan import ScanUnit, plan_partitions
from iac_spark.inputs.scan import ScanStats, scan_columns, scan_unit
from iac_spark.inputs.survey import survey
from iac_spark.sources.options import ZipDcmOptions, parse_bytes

from .helpers import write_zip

COL = {c: i for i, c in enumerate(scan_columns(DicomParser()))}


def scan(unit: ScanUnit, **kw: object) -> list[tuple]:
    """The zipdcm rows of one unit (DICOM parser, meta on)."""
    return list(scan_unit(unit, DicomParser(), **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ct_bytes(testdata_dir: Path) -> bytes:
    return (testdata_dir / "CT_small.dcm").read_bytes()


@pytest.fixture(scope="module")
def messy_zip(tmp_path_factory: pytest.TempPathFactory, ct_bytes: bytes) -> Path:
    """A zip with one of each kind of member a real archive can hold."""
    root = tmp_path_factory.mktemp("messy")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep/one.dcm", ct_bytes)
    return write_zip(
        root / "messy.zip",
        {
            "s/ct.dcm": ct_bytes,
            "s/UPPER.DCM": ct_bytes,
            "s/IM0001": ct_bytes,  # extensionless, with preamble
            "s/nopreamble": ct_bytes[132:],  # no preamble: forced parse
            "s/truncated_pixels.dcm": ct_bytes[:20000],
            "s/truncated_header.dcm": ct_bytes[:3000],
            "s/empty.dcm": b"",
            "s/garbage.dcm": b"\x01\x02 this is not dicom at all" * 10,
            "LICENSE.txt": b"CC BY 4.0",
            "__MACOSX/s/._ct.dcm": b"\x00\x05\x16\x07 apple double",
            "nested.zip": inner.getvalue(),
            "张三/影像1.dcm": ct_bytes,
        },
        gbk_names=True,
    )


def test_gbk_names_are_decoded(messy_zip: Path) -> None:
    with zipfile.ZipFile(messy_zip) as zf:
        names = [m.name for m in list_members(zf)]
        raw = next(i for i in zf.infolist() if not i.filename.isascii())
    assert raw.flag_bits & 0x800 == 0  # stored without the UTF-8 flag, like Windows zips
    assert "张三/影像1.dcm" in names
    assert decode_member_name(raw) == "张三/影像1.dcm"


def test_duplicate_member_names_stay_unique(tmp_path: Path, ct_bytes: bytes) -> None:
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("a.dcm", ct_bytes)
        zf.writestr("a.dcm", ct_bytes)
    rows = scan(ScanUnit(str(z), "zip"))
    assert [r[COL["member"]] for r in rows] == ["a.dcm", "a.dcm#2"]


def test_scan_messy_zip_accounts_for_every_member(messy_zip: Path, ct_bytes: bytes) -> None:
    stats = ScanStats()
    rows = scan(ScanUnit(str(messy_zip), "zip"), stats=stats, include_skipped=True)
    skipped = [r[COL["member"]] for r in rows if r[COL["status"]] == "skipped"]
    rows = [r for r in rows if r[COL["status"]] != "skipped"]
    by = {r[COL["member"]]: r for r in rows}
    ok = {m for m, r in by.items() if r[COL["error"]] is None}
    assert ok == {
        "s/ct.dcm",
        "s/UPPER.DCM",
        "s/IM0001",
        "s/nopreamble",
        "nested.zip!deep/one.dcm",
        "张三/影像1.dcm",
    }
    assert by["s/truncated_pixels.dcm"][COL["error"]].startswith("TruncatedMemberError: ")
    assert by["s/truncated_header.dcm"][COL["error"]].startswith("TruncatedMemberError: ")
    assert by["s/empty.dcm"][COL["error"]].startswith("EmptyMemberError: ")
    assert by["s/garbage.dcm"][COL["error"]].startswith("NotDicomError: ")
    for m, r in by.items():
        if r[COL["error"]] is not None:
            assert f"{messy_zip}!{m}" in r[COL["error"]]  # names file and member
    assert sorted(skipped) == ["LICENSE.txt", "__MACOSX/s/._ct.dcm"]
    assert all(r[COL["status"]] == ("ok" if r[COL["error"]] is None else "error") for r in rows)
    # nothing lost: 12 entries, the nested zip counts as its one member
    c = stats.counts[str(messy_zip)]
    assert c.members == 12 and c.ok + c.errors + c.skipped == c.members and c.skipped == 2
    assert len(rows) == c.ok + c.errors
    # crc32 from the directory matches the bytes
    assert by["s/ct.dcm"][COL["crc32"]] == zlib.crc32(ct_bytes)
    assert by["s/nopreamble"][COL["crc32"]] == zlib.crc32(ct_bytes[132:])


def test_scan_content_and_metadata(messy_zip: Path, ct_bytes: bytes) -> None:
    rows = scan(ScanUnit(str(messy_zip), "zip"), content=True)
    by = {r[COL["member"]]: r for r in rows}
    r = by["nested.zip!deep/one.dcm"]
    assert (
        r[-1] == ct_bytes
        and r[COL["size"]] == len(ct_bytes)
        and r[COL["crc32"]] == zlib.crc32(ct_bytes)
    )
    ds = pydicom.dcmread(io.BytesIO(ct_bytes))
    assert r[COL["sop_instance_uid"]] == ds.SOPInstanceUID
    assert r[COL["rows"]] == ds.Rows and r[COL["has_pixel_data"]] is True
    assert r[COL["transfer_syntax_uid"]] == "1.2.840.10008.1.2.1"
    meta = json.loads(r[COL["meta"]])
    assert meta["00080060"] == {"vr": "CS", "Value": ["CT"]}
    assert "7FE00010" not in meta or "InlineBinary" not in meta["7FE00010"]


def test_modes(messy_zip: Path) -> None:
    unit = ScanUnit(str(messy_zip), "zip")
    stats = ScanStats()
    dropped = scan(unit, mode="DROPMALFORMED", stats=stats)
    assert all(r[COL["error"]] is None for r in dropped) and stats.total.errors == 4
    with pytest.raises(TruncatedMemberError, match=r"messy\.zip!s/truncated_pixels\.dcm"):
        scan(unit, mode="FAILFAST")


def test_corrupt_zip_gives_one_error_row(tmp_path: Path, ct_bytes: bytes) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    rows = scan(ScanUnit(str(bad), "zip"))
    assert len(rows) == 1 and rows[0][COL["error"]].startswith("CorruptZipError: ")
    assert str(bad) in rows[0][COL["error"]]
    # a member whose compressed bytes are damaged
    good = write_zip(tmp_path / "flip.zip", {"a.dcm": ct_bytes})
    raw = bytearray(good.read_bytes())
    raw[200] ^= 0xFF
    good.write_bytes(bytes(raw))
    rows = scan(ScanUnit(str(good), "zip"), content=True)
    assert len(rows) == 1 and rows[0][COL["error"]] is not None


def test_every_pydicom_test_file_ends_somewhere(testdata_dir: Path) -> None:
    files = [p for p in sorted(testdata_dir.rglob("*")) if p.is_file()]
    parsed = errors = skipped = 0
    for p in files:
        stats = ScanStats()
        rows = scan(ScanUnit(str(p), "file"), stats=stats)
        c = stats.total
        assert c.members == 1 and len(rows) == c.ok + c.errors
        parsed, errors, skipped = parsed + c.ok, errors + c.errors, skipped + c.skipped
        for r in rows:
            if r[COL["error"]] is None:
                json.loads(r[COL["meta"]])
                raw = p.read_bytes()  # a gzip file is scanned by its content (zipMR.gz)
                content = gzip.decompress(raw) if raw[:3] == b"\x1f\x8b\x08" else raw
                assert (r[COL["size"]], r[COL["crc32"]]) == (len(content), zlib.crc32(content))
    assert parsed >= 150 and parsed + errors + skipped == len(files)
    assert errors <= 10


def test_parse_header_stops_before_pixels(ct_bytes: bytes) -> None:
    """Only a prefix is read for a metadata scan: the pixel data is never fetched."""
    stream = io.BytesIO(ct_bytes)
    h = parse_header(stream.read, len(ct_bytes), "x")
    assert h.has_pixel_data and stream.tell() < len(ct_bytes)


def test_plain_non_dicom() -> None:
    assert is_plainly_not_dicom("a/LICENSE.txt", b"text")
    assert not is_plainly_not_dicom("a/notes.txt", b"\x00" * 128 + b"DICM")


def test_discover(tmp_path: Path, ct_bytes: bytes) -> None:
    (tmp_path / "sub").mkdir()
    write_zip(tmp_path / "a.zip", {"x.dcm": ct_bytes})
    write_zip(tmp_path / "sub" / "b.ZIP", {"x.dcm": ct_bytes})
    (tmp_path / "sub" / "c.dcm").write_bytes(ct_bytes)
    (tmp_path / ".hidden").write_bytes(b"x")
    files = discover([str(tmp_path)])
    assert [(Path(f.path).name, f.kind) for f in files] == [
        ("a.zip", "zip"),
        ("b.ZIP", "zip"),
        ("c.dcm", "file"),
    ]
    assert [Path(f.path).name for f in discover([str(tmp_path)], recursive=False)] == ["a.zip"]
    assert [Path(f.path).name for f in discover([str(tmp_path)], glob_filter="*.dcm")] == ["c.dcm"]
    assert [Path(f.path).name for f in discover([str(tmp_path / "**" / "*.ZIP")])] == ["b.ZIP"]
    with pytest.raises(InputNotFoundError, match="nope"):
        discover([str(tmp_path / "nope")])


def test_plan_splits_big_zip_by_member_ranges(tmp_path: Path, ct_bytes: bytes) -> None:
    z = write_zip(tmp_path / "big.zip", {f"{i:03d}.dcm": ct_bytes for i in range(40)})
    (tmp_path / "one.dcm").write_bytes(ct_bytes)
    parts = plan_partitions(survey(discover([str(tmp_path)])), num_partitions=4)
    assert len(parts) == 4
    units = [u for p in parts for u in p]
    ranges = [(u.start, u.stop) for u in units if u.path == str(z)]
    assert len(ranges) >= 3 and ranges[0][0] == 0 and ranges[-1][1] is None
    assert all(
        a[1] == b[0] for a, b in itertools.pairwise(ranges)
    )  # contiguous, no gap, no overlap
    rows = [r for u in units for r in scan(u)]
    assert len(rows) == 41 and len({(r[0], r[1]) for r in rows}) == 41


def test_options() -> None:
    o = ZipDcmOptions.parse(
        {"PATH": "/d", "Content": "false", "numPartitions": "3", "maxPartitionBytes": "1m"}
    )
    assert (o.content, o.num_partitions, o.max_partition_bytes) == (False, 3, 1024**2)
    assert ZipDcmOptions.parse({"paths": '["/a", "/b"]'}).paths == ("/a", "/b")
    for bad, match in [
        ({"path": "/d", "content": "maybe"}, "'content'"),
        ({"path": "/d", "mode": "LENIENT"}, "'mode'"),
        ({"path": "/d", "numPartitions": "0"}, "numPartitions"),
        ({"path": "/d", "maxPartitionBytes": "lots"}, "maxPartitionBytes"),
        ({"path": "/d", "contents": "true"}, "unknown zipdcm option"),
        ({}, "needs a path"),
    ]:
        with pytest.raises(OptionError, match=match):
            ZipDcmOptions.parse(bad)
    assert parse_bytes("x", "2g") == 2 * 1024**3


def test_lenient_parse_warnings_are_silenced(testdata_dir: Path) -> None:
    """pydicom warns on odd-but-readable files; a big scan must not flood the logs with that."""
    import warnings

    raw = (testdata_dir / "SC_rgb_jpeg.dcm").read_bytes()  # says explicit VR, is implicit
    with pytest.warns(UserWarning, match="implicit VR"):
        pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)  # pydicom alone warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = parse_header(io.BytesIO(raw).read, len(raw), "SC_rgb_jpeg.dcm")
    assert h.has_pixel_data and caught == []


def test_skipped_members_inside_nested_zips_are_counted(tmp_path: Path, ct_bytes: bytes) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("IM1.dcm", ct_bytes)
        zf.writestr("README.txt", b"readme")
        zf.writestr("notes.txt", b"notes")
    z = write_zip(tmp_path / "n.zip", {"LICENSE.txt": b"CC", "inner/series.zip": inner.getvalue()})
    stats = ScanStats()
    rows = scan(ScanUnit(str(z), "zip"), stats=stats, include_skipped=True)
    assert sorted((r[COL["member"]], r[COL["status"]]) for r in rows) == [
        ("LICENSE.txt", "skipped"),
        ("inner/series.zip!IM1.dcm", "ok"),
        ("inner/series.zip!README.txt", "skipped"),
        ("inner/series.zip!notes.txt", "skipped"),
    ]
    c = stats.counts[str(z)]
    assert (c.members, c.ok, c.errors, c.skipped) == (4, 1, 0, 3)
    assert all(r[COL["error"]] is None for r in rows)


def test_meta_off_skips_the_json_but_keeps_the_uids(messy_zip: Path) -> None:
    unit = ScanUnit(str(messy_zip), "zip")
    on = {r[COL["member"]]: r for r in scan(unit)}
    off = {r[COL["member"]]: r for r in scan_unit(unit, DicomParser(meta=False))}
    assert set(on) == set(off)
    for m, r in off.items():
        assert r[COL["meta"]] is None
        assert r[: COL["meta"]] == on[m][: COL["meta"]] and r[COL["status"]] == on[m][COL["status"]]


def test_survey_reads_each_directory_once_and_fingerprints_change(
    tmp_path: Path, ct_bytes: bytes
) -> None:
    z = write_zip(tmp_path / "a.zip", {"x.dcm": ct_bytes, "y.dcm": ct_bytes})
    [s] = survey(discover([str(z)]))
    assert s.num_members == 2 and s.weights is not None
    write_zip(z, {"x.dcm": ct_bytes, "y.dcm": ct_bytes[:-1]})
    [s2] = survey(discover([str(z)]))
    assert s2.fingerprint != s.fingerprint
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 cut short")
    [s3] = survey(discover([str(bad)]))
    assert s3.weights is None and len(s3.fingerprint) == 64
