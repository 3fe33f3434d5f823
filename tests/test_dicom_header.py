"""Tests for iac_spark.dicom.header / attributes: the Header fields of one parse. No Spark.

The reference for every attribute is pydicom's own parse of the same file
(``dcmread(stop_before_pixels=True)`` and its element conversion: VR lookup,
byte order, character sets), normalised by the documented rules of
:mod:`iac_spark.dicom.attributes` (first value, padding stripped, null where
pydicom cannot convert the value or the value is not finite / not an integer).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
import struct
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import DA

from iac_spark.dicom import attributes as attributes_module
from iac_spark.dicom import header as header_module
from iac_spark.dicom.attributes import CORE, PROMOTED, read_attributes
from iac_spark.dicom.dicom_json import JsonEncoderCache, dataset_to_json
from iac_spark.dicom.header import Header, parse_header
from iac_spark.errors import DicomJsonError, MemberError, error_text

DATA_ROOT = Path(str(pydicom.data.get_testdata_file("CT_small.dcm"))).parent.parent
ALL_FILES = sorted(
    p
    for folder in ("test_files", "charset_files")
    for p in (DATA_ROOT / folder).rglob("*")
    if p.is_file()
)

# The attributes of each kind (attributes.py "Rules").
_TAGS = {name: tag for name, tag, _, _ in attributes_module._SPEC}
_KIND = {name: kind.__name__.strip("_") for name, _, _, kind in attributes_module._SPEC}
_INVALID = object()  # pydicom itself cannot convert the element


def _parse(data: bytes, where: str = "f.dcm", **kwargs: Any) -> Header:
    return parse_header(io.BytesIO(data).read, len(data), where, **kwargs)


def _parse_or_none(data: bytes) -> Header | None:
    try:
        return _parse(data, cache=JsonEncoderCache())
    except MemberError:
        return None


def _first(value: Any) -> Any:
    if isinstance(value, MultiValue | list):
        return value[0] if len(value) else None
    return value


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, MultiValue | list) else [value]


def _expected(ds: Dataset, name: str) -> Any:
    """What the attribute must be, from pydicom's conversion of the element."""
    try:
        elem = ds[_TAGS[name]]
    except KeyError:
        return None
    except Exception:
        return _INVALID
    value = elem.value
    assert not isinstance(value, bytes), f"{name}: pydicom left the value undecoded"
    if value is None or value == "":
        return None
    kind = _KIND[name]
    if kind == "text":
        v = _first(value)
        return (str(v).strip(" \x00") or None) if v is not None else None
    if kind == "strings":
        vals = tuple("" if v is None else str(v).strip(" \x00") for v in _values(value))
        return vals if any(vals) else None
    if kind == "date":
        try:
            d = DA(str(_first(value)).strip())
        except ValueError:
            return None
        return None if d is None else datetime.date(d.year, d.month, d.day)
    if kind == "integer":
        v = _first(value)
        if isinstance(v, str) or v is None:
            return None
        num = float(v)
        if not (math.isfinite(num) and num.is_integer()) or not -(2**31) <= num < 2**31:
            return None
        return int(num)
    if kind == "number":
        v = _first(value)
        num = float(v) if v is not None and not isinstance(v, str) else math.nan
        return num if math.isfinite(num) else None
    assert kind == "numbers"
    vals = _values(value)
    if any(v is None or v == "" or isinstance(v, str) for v in vals):
        return None
    nums = tuple(float(v) for v in vals)
    return nums if nums and all(map(math.isfinite, nums)) else None


def _reference(data: bytes) -> tuple[Dataset, dict[str, Any]]:
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=not has_preamble)
        expected = {name: _expected(ds, name) for name in CORE + PROMOTED}
    meta = ds.file_meta if ds.file_meta is not None else FileMetaDataset()
    for name, meta_kw in (
        ("sop_instance_uid", "MediaStorageSOPInstanceUID"),
        ("sop_class_uid", "MediaStorageSOPClassUID"),
    ):
        if expected[name] is None and meta.get(meta_kw):
            expected[name] = str(meta.get(meta_kw)).strip(" \x00") or None
    return ds, expected


# --------------------------------------------------------------------------
# Every pydicom test file
# --------------------------------------------------------------------------

_COMPARED: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(DATA_ROOT)))
def test_attributes_match_pydicom(path: Path) -> None:
    data = path.read_bytes()
    header = _parse_or_none(data)
    if header is None:
        pytest.skip("not a DICOM header parse_header reads (an error row)")
    ds, expected = _reference(data)
    got = {name: getattr(header, name) for name in CORE + PROMOTED}
    mismatches = {}
    for name in CORE + PROMOTED:
        want = expected[name]
        if want is _INVALID:
            want = None  # pydicom cannot convert it: a null column
        if got[name] != want:
            mismatches[name] = (got[name], want)
    assert not mismatches
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    if ts:
        assert header.transfer_syntax_uid == ts
    assert json.loads(header.meta or "") == json.loads(
        dataset_to_json(ds, cache=JsonEncoderCache())
    )
    _COMPARED[path.name] = got


def test_enough_files_and_every_attribute_compared() -> None:
    """The comparison above is not vacuous: many files, and every attribute seen non-null."""
    compared = {p.name: _parse_or_none(p.read_bytes()) for p in ALL_FILES}
    headers = [h for h in compared.values() if h is not None]
    assert len(headers) >= 60
    for name in CORE + PROMOTED:
        assert any(getattr(h, name) is not None for h in headers), name
    # and the types are the documented ones
    for h in headers:
        assert h.study_date is None or type(h.study_date) is datetime.date
        for name in ("pixel_spacing", "image_position_patient", "image_orientation_patient"):
            v = getattr(h, name)
            assert v is None or (type(v) is tuple and all(type(x) is float for x in v))
        assert h.image_type is None or all(type(x) is str for x in h.image_type)


def test_known_values_ct_small() -> None:
    h = _parse((DATA_ROOT / "test_files" / "CT_small.dcm").read_bytes())
    assert h.study_date == datetime.date(2004, 1, 19)
    assert h.series_number == 1
    assert h.manufacturer == "GE MEDICAL SYSTEMS"
    assert h.slice_thickness == 5.0
    assert h.pixel_spacing == (0.661468, 0.661468)
    assert h.image_position_patient == (-158.135803, -179.035797, -75.699997)
    assert h.image_orientation_patient == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert h.bits_allocated == 16
    assert h.photometric_interpretation == "MONOCHROME2"
    assert h.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")


def test_promoted_names_and_header_fields() -> None:
    assert (
        PROMOTED
        == header_module.PROMOTED
        == (
            "study_date",
            "series_number",
            "study_description",
            "series_description",
            "body_part_examined",
            "patient_sex",
            "patient_age",
            "manufacturer",
            "manufacturer_model_name",
            "slice_thickness",
            "spacing_between_slices",
            "pixel_spacing",
            "image_position_patient",
            "image_orientation_patient",
            "bits_allocated",
            "photometric_interpretation",
            "image_type",
        )
    )
    names = [f.name for f in dataclasses.fields(Header)]
    assert set(PROMOTED) <= set(names) and set(CORE) <= set(names)
    assert names[-1] == "meta"


# --------------------------------------------------------------------------
# Encodings and odd values
# --------------------------------------------------------------------------


def _file(ds: Dataset, ts: str = ExplicitVRLittleEndian, **meta: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)
    ds.file_meta.MediaStorageSOPClassUID = UID(meta.get("cls", "1.2.840.10008.5.1.4.1.1.7"))
    ds.file_meta.MediaStorageSOPInstanceUID = UID(meta.get("inst", "1.2.3.4"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _sample() -> Dataset:
    """A small dataset with every promoted attribute but spacing between slices."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyDate = "20240229"
    ds.SeriesNumber = "7"
    ds.StudyDescription = "Thorax^Übersicht"
    ds.SeriesDescription = " lung window "
    ds.PatientSex = "F"
    ds.PatientAge = "045Y"
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImagePositionPatient = ["-1", "2.5", "1e2"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.BitsAllocated = 16
    ds.Rows = 512
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "AXIAL"]
    return ds


@pytest.mark.parametrize(
    "ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_same_values_any_transfer_syntax(ts: str) -> None:
    h = _parse(_file(_sample(), ts))
    assert h.study_date == datetime.date(2024, 2, 29)
    assert h.series_number == 7
    assert h.study_description == "Thorax^Übersicht"
    assert h.series_description == "lung window"
    assert h.patient_sex == "F" and h.patient_age == "045Y"
    assert h.slice_thickness == 1.25
    assert h.pixel_spacing == (0.7, 0.7)
    assert h.image_position_patient == (-1.0, 2.5, 100.0)
    assert h.image_orientation_patient == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert h.bits_allocated == 16 and h.rows == 512
    assert h.image_type == ("ORIGINAL", "PRIMARY", "", "AXIAL")
    assert h.transfer_syntax_uid == ts


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("ISO_IR 192", "Hirn 脑 MRT"),
        ("GB18030", "头部平扫"),
        ("ISO_IR 144", "Головной мозг"),
        (["", "ISO 2022 IR 87"], "頭部単純"),
    ],
)
def test_text_honours_the_character_set(charset: str | list[str], text: str) -> None:
    ds = _sample()
    ds.SpecificCharacterSet = charset
    ds.StudyDescription = text
    ds.Manufacturer = text.split()[0]
    data = _file(ds)
    h = _parse(data)
    assert h.study_description == text
    assert h.manufacturer == text.split()[0]
    _, expected = _reference(data)
    assert expected["study_description"] == text


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values set
def test_invalid_values_are_null_never_raise() -> None:
    ds = _sample()
    ds.StudyDate = "20231301"  # month 13
    ds.SeriesNumber = "1.5"  # IS must be an integer
    ds.SliceThickness = "NaN"
    ds.SpacingBetweenSlices = "1_0"  # float() reads it; DS does not
    ds.PixelSpacing = "0.5\\"  # one value empty
    ds.ImagePositionPatient = ["1", "inf", "3"]
    ds.ImageOrientationPatient = "1\\2\\3\\4\\5\\6"  # made invalid in the bytes below
    ds.InstanceNumber = "99999999999"  # outside int32
    ds.ImageType = "\\\\"
    ds.PatientAge = "   "
    ds.add_new(0x00280100, "OB", b"\x10\x00")  # BitsAllocated with a binary VR: unusable
    data = _file(ds)
    assert data.count(b"1\\2\\3\\4\\5\\6 ") == 1
    h = _parse(data.replace(b"1\\2\\3\\4\\5\\6 ", b"a\\b\\c\\d\\e\\f "))
    for name in (
        "study_date",
        "series_number",
        "slice_thickness",
        "spacing_between_slices",
        "pixel_spacing",
        "image_position_patient",
        "image_orientation_patient",
        "instance_number",
        "image_type",
        "patient_age",
        "bits_allocated",
    ):
        assert getattr(h, name) is None, name
    assert h.study_description == "Thorax^Übersicht"  # the others are unaffected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_valid_variants() -> None:
    ds = _sample()
    ds.StudyDate = "2001.02.03"  # ACR-NEMA form, read by pydicom too
    ds.SeriesNumber = "3.0"
    ds.InstanceNumber = " 12 "
    ds.SliceThickness = " .5 "
    ds.SpacingBetweenSlices = "+2E1"
    h = _parse(_file(ds))
    assert h.study_date == datetime.date(2001, 2, 3)
    assert h.series_number == 3 and h.instance_number == 12
    assert h.slice_thickness == 0.5 and h.spacing_between_slices == 20.0


def test_read_attributes_does_not_convert_and_reads_converted() -> None:
    ds = pydicom.dcmread(DATA_ROOT / "test_files" / "MR_small.dcm", stop_before_pixels=True)
    raw = read_attributes(ds)
    assert all(type(e).__name__ == "RawDataElement" for e in ds._dict.values())
    _ = ds.PixelSpacing, ds.ImageType, ds.Rows, ds.StudyDate, ds.SeriesNumber, ds.Manufacturer
    assert read_attributes(ds) == raw


# --------------------------------------------------------------------------
# File meta fallback
# --------------------------------------------------------------------------


def _without_sop_uids() -> Dataset:
    ds = _sample()
    del ds.SOPInstanceUID
    del ds.SOPClassUID
    return ds


@pytest.mark.parametrize(
    "ts",
    [
        ExplicitVRLittleEndian,  # meta group walked by the fast path
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,  # the dcmread path
    ],
)
def test_sop_uids_fall_back_to_file_meta(ts: str) -> None:
    data = _file(_without_sop_uids(), ts, cls="1.2.840.10008.5.1.4.1.1.4", inst="9.8.7.6")
    h = _parse(data)
    assert h.sop_instance_uid == "9.8.7.6"
    assert h.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4"
    assert h.transfer_syntax_uid == ts
    # the fast path is the one taken for the non-deflated syntaxes
    assert (header_module._fast_read(data) is not None) == (ts != DeflatedExplicitVRLittleEndian)


def test_dataset_uids_win_over_file_meta() -> None:
    h = _parse(_file(_sample(), cls="1.2.840.10008.5.1.4.1.1.4", inst="9.8.7.6"))
    assert h.sop_instance_uid == "1.2.3.4.5"
    assert h.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"


def test_no_file_meta_no_fallback() -> None:
    data = _file(_without_sop_uids())
    meta_end = 132 + 12 + struct.unpack_from("<L", data, 140)[0]
    h = _parse(data[meta_end:])  # no preamble, no meta: a forced read of the dataset
    assert h.sop_instance_uid is None and h.sop_class_uid is None
    assert h.study_date == datetime.date(2024, 2, 29)


# --------------------------------------------------------------------------
# meta=False
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm", "ExplVR_LitEndNoMeta.dcm"]
)
def test_meta_false_skips_the_encoder_only(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (DATA_ROOT / "test_files" / name).read_bytes()
    with_meta = _parse(data, cache=JsonEncoderCache())
    assert with_meta.meta is not None

    def encoder_must_not_run(*args: object, **kwargs: object) -> str:
        raise AssertionError("dataset_to_json ran with meta=False")

    monkeypatch.setattr(header_module, "dataset_to_json", encoder_must_not_run)
    without = _parse(data, meta=False)
    assert without.meta is None
    assert dataclasses.replace(with_meta, meta=None) == without


# --------------------------------------------------------------------------
# DicomJsonError
# --------------------------------------------------------------------------


def _nested_sequences(depth: int) -> bytes:
    """(0040,A730) Content Sequence nested ``depth`` levels deep, every sequence and item
    with a defined length (explicit VR little endian), a TextValue at the bottom."""
    inner = struct.pack("<HH", 0x0040, 0xA160) + b"UT\x00\x00" + struct.pack("<L", 4) + b"leaf"
    for _ in range(depth):
        item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
        inner = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\x00\x00" + struct.pack("<L", len(item))
        inner += item
    return inner


def test_deeply_nested_sequences_are_a_json_error_row() -> None:
    """The one failure reachable from file bytes: pydicom reads the header (defined-length
    sequences stay raw), but encoding them recurses past Python's limit. A placeholder
    used to stand in for the sequence; now the member is an error row naming it."""
    data = _file(_sample()) + _nested_sequences(3000)
    where = "/a.zip!deep.dcm"
    with pytest.raises(DicomJsonError) as info:
        _parse(data, where, cache=JsonEncoderCache())
    text = error_text(info.value)
    assert text.startswith(
        "DicomJsonError: /a.zip!deep.dcm: cannot encode element (0040,A730) > item 0"
    )
    assert "RecursionError" in text and "nested too deeply" in text
    encoder_error = info.value.__cause__
    assert isinstance(encoder_error, DicomJsonError)
    assert isinstance(encoder_error.__cause__, RecursionError)
    # the same member is fine without DICOM JSON, and a shallow nesting encodes
    assert _parse(data, where, meta=False).study_date == datetime.date(2024, 2, 29)
    shallow = json.loads(_parse(_file(_sample()) + _nested_sequences(20)).meta or "")
    item = shallow["0040A730"]["Value"][0]
    for _ in range(19):
        item = item["0040A730"]["Value"][0]
    assert item["0040A160"] == {"vr": "UT", "Value": ["leaf"]}


def test_unencodable_value_names_the_element_path() -> None:
    """A dataset built in code can hold values no VR can: raised, never a placeholder."""
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00081160, "IS", [1, 2])  # fine
    ds = Dataset()
    ds.PatientID = "P1"
    ds.ReferencedImageSequence = [Dataset(), item]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item.add_new(0x00181030, "LO", object())  # no text value
    with pytest.raises(
        DicomJsonError,
        match=r"cannot encode element \(0008,1140\) > item 1 > "
        r"\(0018,1030\): TypeError: LO value of type object is not text",
    ):
        dataset_to_json(ds, cache=JsonEncoderCache())
