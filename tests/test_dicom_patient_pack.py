"""``dicom_patient`` packs built by the adapter's builder: pixels, metadata, rejections, verify.

Pure Python (no Spark). Every pack is opened with the adapter's own ``DicomPatientReader`` and
compared with pydicom's reading of the source member.
"""

from __future__ import annotations

import glob
import io
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from iatro.iac import PackReader
from iatro.iac.adapters.dicom import DicomPatientReader
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

from iac_spark.errors import CorruptZipError, OptionError
from iac_spark.packing.dicom_patient import (
    PatientMember,
    PatientPackResult,
    build_patient_pack,
    verify_patient_pack,
)
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's lenient parsing

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REASON = re.compile(
    r"^(UnsupportedPixelDataError|UnsupportedPixelTypeError|ConflictingDuplicateError|"
    r"UnsupportedInstanceError|CorruptZipError): (?P<where>[^ ]+): .+"
)
STUDY = "1.2.826.0.1.3680043.8.498.7001"
SERIES = "1.2.826.0.1.3680043.8.498.7001.1"


# ------------------------------------------------------------------------------------ helpers


def member(
    data: bytes, name: str = "x.dcm", path: str = "/src/PAT.zip", **kw: object
) -> PatientMember:
    sop = kw.pop("sop", None)
    if sop is None:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        sop = str(ds.get("SOPInstanceUID", "")) or None
    content = kw.pop("content", data)
    return PatientMember(path, name, content, sop, len(data), zlib.crc32(data))  # type: ignore[arg-type]


def build(
    tmp_path: Path, members: list[PatientMember], name: str = "p.iac", **kw: object
) -> PatientPackResult:
    kw.setdefault("jxl_effort", 1)
    return build_patient_pack(str(tmp_path / name), members, **kw)  # type: ignore[arg-type]


def make_instance(
    pixels: np.ndarray,
    *,
    sop: str | None = None,
    photometric: str | None = None,
    bits_stored: int | None = None,
    frames: int | None = None,
    patient: str = "PAT-T",
    series: str | None = SERIES,
    ts: UID = ExplicitVRLittleEndian,
    float_pixels: bool = False,
    instance: int = 1,
) -> bytes:
    """A minimal valid CT instance around ``pixels`` ((frames,) rows, cols (, 3))."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = STUDY
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.PatientID = patient
    ds.PatientName = "TEST^PIXELS"
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    rgb = photometric == "RGB"
    shape = pixels.shape[1:] if frames else pixels.shape
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric or "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    if frames:
        ds.NumberOfFrames = frames
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if float_pixels:
        del ds.PixelRepresentation, ds.BitsStored, ds.HighBit
        ds.FloatPixelData = pixels.astype("<f4").tobytes()
    else:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def assert_round_trip(res: PatientPackResult, n: int | None = None) -> None:
    """Every packed instance: pixels == pydicom's, read_dicom parses with the same UIDs."""
    assert res.path is not None and os.path.isfile(res.path)
    if n is not None:
        assert len(res.instances) == n, res.rejected
    reader = DicomPatientReader(res.path)
    pack = PackReader(res.path)
    try:
        assert reader.header["payload_type"] == "dicom_patient"
        sops = reader.instance_table.column("sop_instance_uid").to_pylist()
        assert sorted(i.row for i in res.instances) == list(range(len(sops)))
        for inst in res.instances:
            src = pydicom.dcmread(io.BytesIO(inst.member.read()), force=True)
            assert sops[inst.row] == inst.sop_instance_uid == str(src.SOPInstanceUID)
            assert inst.series_instance_uid == str(src.SeriesInstanceUID)
            assert inst.study_instance_uid == str(src.StudyInstanceUID)
            if "PixelData" in src:
                want = src.pixel_array
                have = reader.read_pixel_array(inst.row, verify=True)
                assert (have.dtype, have.shape) == (want.dtype, want.shape), inst.member.where
                assert np.array_equal(have, want), inst.member.where
                assert inst.pixel_dtype == want.dtype.name
            back = pydicom.dcmread(io.BytesIO(reader.read_dicom(inst.row, verify=True)))
            for key in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
                assert str(back.get(key)) == str(src.get(key)), key
            if "PixelData" in src:  # the rebuilt DICOM-JXL file decodes to the same pixels
                assert str(back.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.110"
            payload = pack.read_payload(inst.row)
            assert (len(payload), zlib.crc32(payload)) == (inst.length, inst.crc32)
            assert (inst.raw_length, inst.raw_crc32) == (inst.member.size, inst.member.crc32)
    finally:
        reader.close()
        pack.close()
    assert verify_patient_pack(res.path) == []
    assert verify_patient_pack(res.path, decode=True) == []


def assert_reason(res: PatientPackResult, m: PatientMember, cls: str, *words: str) -> str:
    (rej,) = [r for r in res.rejected if r.member is m]
    match = REASON.match(rej.reason)
    assert match, rej.reason
    assert rej.error_class == cls, rej.reason
    assert match["where"] == f"{m.where}:".rstrip(":"), rej.reason
    for w in words:
        assert w in rej.reason, rej.reason
    return rej.reason


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".iac"))


# --------------------------------------------------------------------- pydicom's bundled files


def _category(ts: UID | None) -> str | None:
    if ts is None or not ts.is_transfer_syntax:
        return None
    if not ts.is_compressed:
        return "uncompressed"
    if ts == RLELossless:
        return "rle"
    if ts in (JPEGLossless, JPEGLosslessSV1):
        return "jpeg_lossless"
    return None


def _bundled() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(glob.glob(str(TEST_FILES / "*.dcm"))):
        try:
            ds = pydicom.dcmread(path, force=True)
            if "PixelData" not in ds:
                continue
            ts = ds.file_meta.get("TransferSyntaxUID")
            if ts is None and ds.original_encoding[0] is not None:
                ts = ImplicitVRLittleEndian if ds.original_encoding[0] else ExplicitVRLittleEndian
        except Exception:
            continue
        cat = _category(UID(str(ts)) if ts else None)
        if cat:
            out.append((cat, os.path.basename(path), path))
    return out


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    BUNDLED = _bundled()

#: what the layout must say about bundled files that pydicom decodes but the layout cannot hold
BUNDLED_REJECTED = {
    "MR_small_bigendian.dcm": ("UnsupportedPixelTypeError", "big-endian"),
    "SC_rgb_rle_2frame.dcm": ("UnsupportedPixelTypeError", "2 frames"),
    "SC_rgb_rle_32bit.dcm": ("UnsupportedPixelTypeError", "BitsAllocated 32"),
    "liver_1frame.dcm": ("UnsupportedPixelTypeError", "BitsAllocated 1"),
    "examples_palette.dcm": ("UnsupportedPixelTypeError", "PALETTE COLOR"),
    "SC_ybr_full_422_uncompressed.dcm": ("UnsupportedPixelTypeError", "YBR_FULL_422"),
    "rtdose.dcm": ("UnsupportedPixelTypeError", "15 frames"),
    "MR_truncated.dcm": ("UnsupportedPixelDataError", "bytes"),
}


def _pydicom_decodes(data: bytes) -> Exception | None:
    try:
        _ = pydicom.dcmread(io.BytesIO(data), force=True).pixel_array
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize(
    ("category", "name", "path"), BUNDLED, ids=[f"{c}-{n}" for c, n, _ in BUNDLED]
)
def test_bundled_file_round_trip_or_reason(
    tmp_path: Path, category: str, name: str, path: str
) -> None:
    data = Path(path).read_bytes()
    m = member(data, name, path="/pydicom/test_files.zip")
    res = build(tmp_path, [m])
    problem = _pydicom_decodes(data)
    if res.instances:
        assert problem is None
        assert_round_trip(res, 1)
    else:
        (rej,) = res.rejected
        assert REASON.match(rej.reason), rej.reason
        if name in BUNDLED_REJECTED:
            assert_reason(res, m, *BUNDLED_REJECTED[name])
        assert res.path is None and leftovers(tmp_path) == []
        if problem is not None:
            pytest.skip(
                f"pydicom cannot decode {name} here ({type(problem).__name__}); rejected: {rej.reason[:160]}"
            )
    assert name not in BUNDLED_REJECTED or not res.instances


@pytest.mark.parametrize("category", ["uncompressed", "rle", "jpeg_lossless"])
def test_bundled_category_round_trips(tmp_path: Path, category: str) -> None:
    """The category's decodable bundled files, one pack per patient: the same fate as alone."""
    files = [(n, p) for c, n, p in BUNDLED if c == category]
    data = {n: Path(p).read_bytes() for n, p in files}
    undecodable = {n: e for n, d in data.items() if (e := _pydicom_decodes(d)) is not None}
    if len(undecodable) == len(data):
        listed = "; ".join(
            f"{n}: {type(e).__name__}: {str(e)[:80]}" for n, e in undecodable.items()
        )
        pytest.skip(f"no bundled {category} file decodes with the installed plugins ({listed})")
    by_patient: dict[str, list[PatientMember]] = {}
    sops: set[str | None] = set()
    for n, d in data.items():
        m = member(d, n, path=f"/pydicom/{category}.zip")
        if n in undecodable or m.sop_instance_uid in sops:  # MR_small_* re-encode one instance
            continue
        sops.add(m.sop_instance_uid)
        ds = pydicom.dcmread(io.BytesIO(d), force=True, stop_before_pixels=True)
        by_patient.setdefault(str(ds.get("PatientID", "")), []).append(m)
    packed = 0
    for i, group in enumerate(by_patient.values()):
        res = build(tmp_path, group, name=f"p{i}.iac")
        for r in res.rejected:
            alone = build(tmp_path, [r.member], name=f"alone-{i}.iac").rejected
            assert [a.reason for a in alone] == [r.reason]
        if res.instances:
            assert_round_trip(res)
            packed += len(res.instances)
    assert packed > 0


# ------------------------------------------------------------------------- generated corpus


@pytest.fixture(scope="module")
def corpus_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = CorpusSpec(patients=1, ct_slices=5, mr_slices=4, ct_size=64, mr_size=32)
    return generate_corpus(tmp_path_factory.mktemp("corpus"), spec).zips[0]


def zip_members(path: Path, *, lazy: bool) -> list[PatientMember]:
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".dcm"):
                continue
            data = zf.read(info)

            def load(name: str = info.filename) -> bytes:
                with zipfile.ZipFile(path) as z:
                    return z.read(name)

            out.append(member(data, info.filename, str(path), content=load if lazy else data))
    return out


@pytest.mark.parametrize("lazy", [False, True], ids=["bytes", "loader"])
def test_generated_corpus_round_trip(tmp_path: Path, corpus_zip: Path, lazy: bool) -> None:
    members = zip_members(corpus_zip, lazy=lazy)
    res = build(tmp_path, members, jxl_effort=2, check_pixels=True, max_buffered_bytes=10_000)
    assert res.rejected == [] and res.duplicates == []
    assert_round_trip(res, len(members))
    assert res.patient_id == "PAT-0000" and res.num_series == 2
    assert {i.modality for i in res.instances} == {"CT", "MR"}
    assert res.header["codec_params"] == {"effort": 2, "lossless": True, "usecontainer": True}
    assert res.file_bytes == os.path.getsize(tmp_path / "p.iac")
    assert res.data_bytes == res.header["data_length"]
    assert leftovers(tmp_path) == []
    ct = sorted((i for i in res.instances if i.modality == "CT"), key=lambda i: i.row)
    assert [i.instance_number for i in ct] == [
        1,
        2,
        3,
        4,
        5,
    ]  # the builder orders by series, number


def test_workers_give_the_same_pack(tmp_path: Path, corpus_zip: Path) -> None:
    members = zip_members(corpus_zip, lazy=False)
    one = build(tmp_path, members, name="w1.iac", workers=1)
    two = build(tmp_path, members, name="w2.iac", workers=2)
    assert Path(str(one.path)).read_bytes() == Path(str(two.path)).read_bytes()


# -------------------------------------------------------------- constructed pixel types


def _ramp(shape: tuple[int, ...], dtype: str, lo: int, hi: int) -> np.ndarray:
    values = np.linspace(lo, hi, num=int(np.prod(shape)))
    return values.reshape(shape).astype(dtype)


PIXEL_TYPES = {
    "uint8": (_ramp((16, 24), "u1", 0, 255), {}),
    "int8": (_ramp((16, 24), "i1", -128, 127), {}),
    "uint16-16bit": (_ramp((20, 12), "u2", 0, 65535), {}),
    "uint16-12bit": (_ramp((20, 12), "u2", 0, 4095), {"bits_stored": 12}),
    "int16-16bit": (_ramp((20, 12), "i2", -32768, 32767), {}),
    "int16-12bit": (_ramp((20, 12), "i2", -2048, 2047), {"bits_stored": 12}),
    "rgb8": (_ramp((10, 14, 3), "u1", 0, 255), {"photometric": "RGB"}),
    "rgb16": (_ramp((10, 14, 3), "u2", 0, 65535), {"photometric": "RGB"}),
    "monochrome1": (_ramp((8, 8), "u2", 0, 1000), {"photometric": "MONOCHROME1"}),
}


@pytest.mark.parametrize("kind", sorted(PIXEL_TYPES))
def test_pixel_types_round_trip(tmp_path: Path, kind: str) -> None:
    pixels, kw = PIXEL_TYPES[kind]
    data = make_instance(pixels, **kw)  # type: ignore[arg-type]
    res = build(tmp_path, [member(data)], check_pixels=True)
    assert_round_trip(res, 1)
    have = DicomPatientReader(str(res.path)).read_pixel_array(0)
    assert have.dtype == pixels.dtype and np.array_equal(
        have, pydicom.dcmread(io.BytesIO(data)).pixel_array
    )


def test_one_patient_pack_of_every_type_together(tmp_path: Path) -> None:
    members = [
        member(make_instance(p, instance=i, series=f"{SERIES}.{i}", **kw), f"{k}.dcm")  # type: ignore[arg-type]
        for i, (k, (p, kw)) in enumerate(sorted(PIXEL_TYPES.items()), start=1)
    ]
    res = build(tmp_path, members)
    assert_round_trip(res, len(members))
    assert res.num_series == len(members)


def test_multi_frame_is_rejected_single_frame_kept(tmp_path: Path) -> None:
    frames = _ramp((3, 8, 8), "u2", 0, 900)
    multi = member(make_instance(frames, frames=3), "multi.dcm")
    one = member(make_instance(frames[:1], frames=1), "one.dcm")
    res = build(tmp_path, [multi, one])
    assert_reason(res, multi, "UnsupportedPixelTypeError", "3 frames")
    assert_round_trip(res, 1)
    assert DicomPatientReader(str(res.path)).read_pixel_array(0).shape == (8, 8)


def test_file_meta_without_preamble_is_packed(tmp_path: Path) -> None:
    """A member starting with its File Meta group (no preamble, no DICM) packs unchanged."""
    full = make_instance(_ramp((8, 8), "i2", -500, 500))
    m = member(full[132:], "no_preamble.dcm")
    assert _pydicom_decodes(full[132:]) is None
    res = build(tmp_path, [m])
    assert_round_trip(res, 1)
    assert res.instances[0].source_transfer_syntax == ExplicitVRLittleEndian


def test_old_style_file_without_file_meta_is_rejected(tmp_path: Path) -> None:
    """No preamble, no File Meta: pydicom's pixel_array has no transfer syntax, so no pack."""
    ds = pydicom.dcmread(io.BytesIO(make_instance(_ramp((8, 8), "i2", -500, 500))))
    ds.file_meta, ds.preamble = FileMetaDataset(), None
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
    raw = buf.getvalue()
    assert raw[128:132] != b"DICM" and _pydicom_decodes(raw) is not None
    m = member(raw, "raw_no_preamble.dcm")
    res = build(tmp_path, [m])
    assert_reason(res, m, "UnsupportedPixelDataError", "Transfer Syntax UID", "pixel_array")
    assert res.path is None


def test_instance_without_pixels_is_held_as_metadata(tmp_path: Path) -> None:
    """The layout holds non-image instances (an SR): no pixel record, read_dicom rebuilds it."""
    m = member((TEST_FILES / "test-SR.dcm").read_bytes(), "sr.dcm")
    res = build(tmp_path, [m])
    assert_round_trip(res, 1)
    (inst,) = res.instances
    assert (inst.has_pixel_data, inst.length, inst.pixel_dtype) == (False, 0, None)


def test_loaders_run_on_the_calling_thread(tmp_path: Path, corpus_zip: Path) -> None:
    """With builder threads, loaders are still called from the caller's thread only."""
    import threading

    me = threading.get_ident()
    threads: set[int] = set()
    members = []
    for m in zip_members(corpus_zip, lazy=False):

        def load(data: bytes = m.read()) -> bytes:
            threads.add(threading.get_ident())
            return data

        members.append(member(m.read(), str(m.source_member), m.source_path, content=load))
    res = build(tmp_path, members, workers=2, max_buffered_bytes=0)
    assert_round_trip(res, len(members))
    assert threads == {me}


# ---------------------------------------------------------------------------- rejections


def test_float_pixels_are_rejected(tmp_path: Path) -> None:
    floats = member(make_instance(_ramp((8, 8), "f4", -1, 1), float_pixels=True), "dose.dcm")
    good = member(make_instance(_ramp((8, 8), "u2", 0, 100)), "good.dcm")
    res = build(tmp_path, [floats, good])
    assert_reason(
        res, floats, "UnsupportedPixelTypeError", "FloatPixelData", "/src/PAT.zip!dose.dcm"
    )
    assert_round_trip(res, 1)


def _undecodable_compressed() -> list[tuple[str, UID]]:
    out = []
    for path in sorted(glob.glob(str(TEST_FILES / "*.dcm"))):
        try:
            ts = UID(
                str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            )
            if ts.is_compressed and not get_decoder(ts).is_available:
                out.append((path, ts))
        except Exception:
            continue
    return out


def test_compressed_syntax_without_decoder_is_rejected(tmp_path: Path) -> None:
    cases = _undecodable_compressed()
    if not cases:
        pytest.skip("every bundled compressed transfer syntax has a decoder plugin here")
    members = [member(Path(p).read_bytes(), os.path.basename(p)) for p, _ in cases]
    res = build(tmp_path, members)
    assert res.instances == []
    for m, (_, ts) in zip(members, cases, strict=True):
        reason = next(r.reason for r in res.rejected if r.member is m)
        assert REASON.match(reason), reason
        if reason.startswith("UnsupportedPixelDataError"):  # (others fail an earlier check)
            assert str(ts) in reason and "no pydicom decoder plugin" in reason, reason


def test_duplicates_identical_and_conflicting(tmp_path: Path) -> None:
    sop = generate_uid()
    a = make_instance(_ramp((8, 8), "u2", 0, 100), sop=sop)
    b = make_instance(_ramp((8, 8), "u2", 0, 200), sop=sop)
    first = member(a, "a/1.dcm")
    same = member(a, "b/1.dcm", path="/src/other.zip")
    other = member(b, "c/1.dcm")
    res = build(tmp_path, [other, same, first])  # the order given does not matter
    assert [i.member for i in res.instances] == [first]
    assert [(d.member, d.kept) for d in res.duplicates] == [(same, first)]
    assert_reason(res, other, "ConflictingDuplicateError", sop, "packed from /src/PAT.zip!a/1.dcm")
    assert_round_trip(res, 1)


def test_conflict_keeps_the_copy_that_can_be_held(tmp_path: Path) -> None:
    sop = generate_uid()
    multi = member(make_instance(_ramp((2, 8, 8), "u2", 0, 9), sop=sop, frames=2), "a.dcm")
    single = member(make_instance(_ramp((8, 8), "u2", 0, 9), sop=sop), "b.dcm")
    res = build(tmp_path, [multi, single])
    assert [i.member for i in res.instances] == [single]
    assert_reason(res, multi, "UnsupportedPixelTypeError")


def test_header_problems_are_rejected(tmp_path: Path) -> None:
    good = member(make_instance(_ramp((8, 8), "u2", 0, 9)), "good.dcm")
    no_series = member(make_instance(_ramp((8, 8), "u2", 0, 9), series=None), "noseries.dcm")
    stranger = member(make_instance(_ramp((8, 8), "u2", 0, 9), patient="SOMEONE-ELSE"), "other.dcm")
    full = make_instance(_ramp((8, 8), "u2", 0, 9))
    truncated = member(full[:-10], "short.dcm")
    wrong_uid = member(make_instance(_ramp((8, 8), "u2", 0, 9)), "uid.dcm", sop="1.2.3.4")
    res = build(tmp_path, [good, no_series, stranger, truncated, wrong_uid])
    assert_reason(res, no_series, "UnsupportedInstanceError", "SeriesInstanceUID")
    assert_reason(res, stranger, "UnsupportedInstanceError", "'SOMEONE-ELSE'", "'PAT-T'")
    assert_reason(res, truncated, "UnsupportedPixelDataError", "118 bytes", "128")
    assert_reason(res, wrong_uid, "UnsupportedInstanceError", "differs from the scanned 1.2.3.4")
    assert_round_trip(res, 1)


def test_unreadable_or_changed_members_are_rejected(tmp_path: Path) -> None:
    data = make_instance(_ramp((8, 8), "u2", 0, 9))

    def broken() -> bytes:
        raise CorruptZipError("/src/PAT.zip!gone.dcm: cannot read member: BadZipFile: boom")

    gone = member(data, "gone.dcm", content=broken)
    changed = PatientMember("/src/PAT.zip", "changed.dcm", data, None, len(data), 1234)
    res = build(tmp_path, [gone, changed])
    assert res.path is None and res.instances == [] and leftovers(tmp_path) == []
    assert_reason(res, gone, "CorruptZipError", "BadZipFile")
    assert_reason(res, changed, "CorruptZipError", "changed since the scan")


def test_loader_failing_during_the_build_is_rejected(tmp_path: Path) -> None:
    """A loader that works for the header checks but not for the build (memory budget 0)."""
    data = make_instance(_ramp((8, 8), "u2", 0, 9))
    calls = {"n": 0}

    def flaky() -> bytes:
        calls["n"] += 1
        if calls["n"] > 1:
            raise CorruptZipError("/src/PAT.zip!flaky.dcm: cannot read member: OSError: gone")
        return data

    flaky_m = member(data, "flaky.dcm", content=flaky)
    good = member(make_instance(_ramp((8, 8), "u2", 0, 99)), "good.dcm")
    res = build(tmp_path, [flaky_m, good], max_buffered_bytes=0)
    assert_reason(res, flaky_m, "CorruptZipError", "gone")
    assert_round_trip(res, 1)
    assert leftovers(tmp_path) == []


def _corrupt_rle() -> bytes:
    """MR_small_RLE with a broken RLE header: only decoding finds out."""
    ds = pydicom.dcmread(TEST_FILES / "MR_small_RLE.dcm")
    frame = bytearray(ds.PixelData)
    start = 8 + 8 + 4  # basic offset table item (tag+len+1 offset), then the frame item's tag+len
    frame[start : start + 4] = (9).to_bytes(4, "little")  # 9 segments: impossible for 16-bit
    ds.PixelData = bytes(frame)
    ds.SOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_decode_failure_found_by_the_builder_is_isolated(tmp_path: Path) -> None:
    bad_data = _corrupt_rle()
    assert _pydicom_decodes(bad_data) is not None
    bad = member(bad_data, "bad_rle.dcm")
    good = member((TEST_FILES / "MR_small_RLE.dcm").read_bytes(), "MR_small_RLE.dcm")
    res = build(tmp_path, [bad, good])
    assert_reason(res, bad, "UnsupportedPixelDataError", "RLE Lossless", "pydicom cannot decode")
    assert_round_trip(res, 1)
    assert leftovers(tmp_path) == []


def test_everything_rejected_writes_no_pack(tmp_path: Path) -> None:
    m = member(make_instance(_ramp((2, 8, 8), "u2", 0, 9), frames=2))
    res = build(tmp_path, [m])
    assert (res.path, res.instances, res.header) == (None, [], {})
    assert [r.error_class for r in res.rejected] == ["UnsupportedPixelTypeError"]
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_and_option_errors(tmp_path: Path) -> None:
    m = member(make_instance(_ramp((8, 8), "u2", 0, 9)))
    build(tmp_path, [m])
    with pytest.raises(FileExistsError):
        build(tmp_path, [m])
    for bad in (0, 11, True, "2"):
        with pytest.raises(OptionError, match="jxl_effort"):
            build(tmp_path, [m], name="q.iac", jxl_effort=bad)
    with pytest.raises(OptionError, match="workers"):
        build(tmp_path, [m], name="q.iac", workers=0)


def test_every_member_accounted_for(tmp_path: Path, corpus_zip: Path) -> None:
    members = zip_members(corpus_zip, lazy=False)
    dup = member(members[0].read(), "copy.dcm", path="/elsewhere.zip")
    multi = member(make_instance(_ramp((2, 8, 8), "u2", 0, 9), frames=2, patient="PAT-0000"))
    given = [*members, dup, multi]
    res = build(tmp_path, given)
    seen = [i.member for i in res.instances] + [d.member for d in res.duplicates]
    seen += [r.member for r in res.rejected]
    assert sorted(map(id, seen)) == sorted(map(id, given))


# -------------------------------------------------------------------------------- verify


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))


@pytest.fixture
def good_pack(tmp_path: Path, corpus_zip: Path) -> tuple[str, dict]:
    res = build(tmp_path, zip_members(corpus_zip, lazy=False))
    assert res.path is not None and verify_patient_pack(res.path) == []
    return res.path, res.header


def test_verify_reports_a_flipped_pixel_byte(good_pack: tuple[str, dict]) -> None:
    path, header = good_pack
    reader = PackReader(path)
    row = reader.index_table.to_pylist()[2]
    reader.close()
    _flip(path, header["data_offset"] + row["offset"] + row["length"] // 2)
    problems = verify_patient_pack(path)
    assert len(problems) == 1 and "row 2" in problems[0] and "pixel CRC-32" in problems[0], problems
    assert problems[0].startswith(f"{path}: ")


def test_verify_reports_a_flipped_template_byte(good_pack: tuple[str, dict]) -> None:
    path, header = good_pack
    series = PackReader(path).slide_table.to_pylist()[1]
    _flip(path, header["data_offset"] + series["template_offset"] + 5)
    problems = verify_patient_pack(path)
    assert any("series 1" in p and "template CRC-32" in p for p in problems), problems


def test_verify_reports_a_flipped_delta_byte(good_pack: tuple[str, dict]) -> None:
    path, _ = good_pack
    delta = PackReader(path).index_table.column("dicom_delta")[3].as_py()
    blob = Path(path).read_bytes()
    assert blob.count(delta) == 1
    _flip(path, blob.index(delta) + len(delta) // 2)
    problems = verify_patient_pack(path)
    assert any("row 3" in p and "delta CRC-32" in p for p in problems), problems


def test_verify_reports_a_damaged_header(good_pack: tuple[str, dict]) -> None:
    path, _ = good_pack
    blob = Path(path).read_bytes()
    _flip(path, blob.index(b'"dicom_patient"') + 3)  # payload_type no longer dicom_patient
    problems = verify_patient_pack(path)
    assert problems and all(p.startswith(f"{path}: ") for p in problems), problems


def test_verify_rejects_other_payload_types(tmp_path: Path) -> None:
    import pyarrow as pa
    from iatro.iac import build_pack

    path = str(tmp_path / "other.iac")
    build_pack(path, {"payload_type": "dicom_p10", "codec": "zstd"}, pa.table({"a": [0]}),
               pa.table({"x": pa.array([1], pa.int32())}), [b"x"])  # fmt: skip
    problems = verify_patient_pack(path)
    assert any("payload_type 'dicom_p10'" in p for p in problems), problems


def test_loader_bytes_are_kept_within_the_budget(tmp_path: Path) -> None:
    """A loader is called again for the build only when the patient exceeds the memory budget."""
    data = make_instance(_ramp((8, 8), "u2", 0, 9))
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return data

    m = member(data, content=load)
    res = build(tmp_path, [m], max_buffered_bytes=0)
    assert_round_trip(res, 1)
    assert len(loads) >= 2  # header checks, then the build (and the round-trip check)
    loads.clear()
    res = build(tmp_path, [m], name="q.iac", max_buffered_bytes=1 << 20)
    assert len(loads) == 1
