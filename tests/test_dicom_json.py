"""Tests for iac_spark.dicom.dicom_json (fast DICOM JSON encoding). No Spark.

The reference is pydicom's own ``DataElement.to_json_dict`` (element by
element, so one element pydicom cannot encode does not hide the others),
normalised for the deliberate, documented differences of ``dataset_to_json``
(see ``_normalise_element``). Every file of pydicom's bundled test data that
pydicom can read is checked.
"""

from __future__ import annotations

import base64
import doctest
import io
import json
import math
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from iac_spark.dicom import dicom_json
from iac_spark.dicom.dicom_json import (
    DicomJsonError,
    JsonEncoderCache,
    dataset_to_json,
    default_cache,
    is_bulk_data_tag,
)

DATA_ROOT = Path(str(pydicom.data.get_testdata_file("CT_small.dcm"))).parent.parent
ALL_FILES = sorted(
    p
    for folder in ("test_files", "charset_files")
    for p in (DATA_ROOT / folder).rglob("*")
    if p.is_file()
)
CHARSET_FILES = sorted((DATA_ROOT / "charset_files").glob("chr*.dcm"))

# Elements pydicom's to_json_dict itself cannot encode, with the reason, and
# what we emit instead. Any other pydicom failure fails the test.
PYDICOM_FAILURES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("badVR.dcm", "00280008"): (
        "IS value '1A' is not an integer: pydicom raises ValueError in int()",
        {"vr": "IS", "Value": ["1A"]},
    ),
}

# VRs whose padding we strip per value (pydicom only strips the element's end).
_STRIPPED_VRS = {"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO"}
_RSTRIPPED_VRS = {"UC", "ST", "LT", "UT"}
# pydicom compares raw length > T // 4 * 3: T=1024 means > 768 raw bytes.
PYDICOM_THRESHOLD = 1024
OUR_EQUIVALENT_THRESHOLD = PYDICOM_THRESHOLD // 4 * 3


def _strict_loads(text: str) -> Any:
    """json.loads that rejects NaN/Infinity literals (strict JSON)."""

    def reject(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


def _read(path: Path | bytes) -> Dataset | None:
    """dcmread(stop_before_pixels=True), with force=True as fallback; None if unreadable."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for force in (False, True):
            try:
                return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=force)
            except Exception:
                continue
    return None


def _normalise_element(key: str, elem: dict[str, Any]) -> dict[str, Any]:
    """Map pydicom's JSON for one element onto our documented conventions.

    1. ``"BulkDataURI": null`` (bulk data handler returning None) -> ``"vr"`` only.
    2. Pixel/overlay/waveform data: ``"vr"`` only whatever the size.
    3. Ambiguous VRs pydicom leaves unresolved (``OB or OW``, ``US or SS or OW``) -> OW.
    4. Empty values in a multi-valued element: ``""`` -> ``null`` (F.2.5).
    5. Padding stripped per value for AE/AS/CS/DA/DT/TM/UI/SH/LO, trailing
       padding for UC/ST/LT/UT.
    6. PN: empty component groups dropped; an all-empty name -> ``null``.
    7. SQ without items: no ``"Value"`` (pydicom: ``[]``).
    DS numbers are compared numerically (``2.5 == 2.50``, ``1 == 1.0``) by
    plain equality of the parsed JSON.
    """
    elem = dict(elem)
    vr = elem["vr"]
    if vr in ("OB or OW", "US or SS or OW"):
        elem["vr"] = vr = "OW"
    if "BulkDataURI" in elem and elem["BulkDataURI"] is None:
        del elem["BulkDataURI"]
    if is_bulk_data_tag(int(key, 16)):
        elem.pop("InlineBinary", None)
    if "Value" in elem:
        values = elem["Value"]
        if vr == "SQ":
            values = [_normalise_dataset(item) for item in values]
        elif vr == "PN":
            values = [({k: v for k, v in pn.items() if v} or None) for pn in values]
        else:
            if vr in _STRIPPED_VRS:
                values = [v.strip(" \x00") if isinstance(v, str) else v for v in values]
            elif vr in _RSTRIPPED_VRS:
                values = [v.rstrip(" \x00") if isinstance(v, str) else v for v in values]
            values = [None if v == "" else v for v in values]
        if not values or (len(values) == 1 and values[0] is None):
            del elem["Value"]
        else:
            elem["Value"] = values
    return elem


def _normalise_dataset(data: dict[str, Any]) -> dict[str, Any]:
    # Group length elements are omitted by us (PS3.18 F.2.2).
    return {k: _normalise_element(k, v) for k, v in data.items() if not k.endswith("0000")}


# A bulk data handler returning None: pydicom then emits "BulkDataURI": null.
_NO_URI: Any = lambda el: None  # noqa: E731


def _pydicom_reference(ds: Dataset) -> tuple[dict[str, Any], set[str]]:
    """pydicom's JSON, element by element; the keys of elements it cannot encode."""
    out: dict[str, Any] = {}
    failed: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in list(ds._dict):
            key = f"{tag:08X}"
            try:
                elem_json = ds[tag].to_json_dict(_NO_URI, PYDICOM_THRESHOLD)
                json.dumps(elem_json, allow_nan=False)
            except Exception:
                failed.add(key)
                continue
            out[key] = elem_json
    return _normalise_dataset(out), failed


# --------------------------------------------------------------------------
# Every pydicom test file
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(DATA_ROOT)))
def test_matches_pydicom_to_json(path: Path) -> None:
    data = path.read_bytes()
    ds = _read(data)
    if ds is None:
        pytest.skip("pydicom cannot read this file, even with force=True")
    raw_before = [tag for tag, elem in ds._dict.items() if isinstance(elem, RawDataElement)]
    cold = dataset_to_json(ds, cache=JsonEncoderCache(), bulk_threshold=OUR_EQUIVALENT_THRESHOLD)
    ours = _strict_loads(cold)
    assert list(ours) == sorted(ours), "keys must be in tag order"
    assert not any(key.endswith("0000") for key in ours), "group lengths are omitted"
    # the input dataset was not converted (still raw where it was raw)
    assert raw_before == [t for t, e in ds._dict.items() if isinstance(e, RawDataElement)]

    reference, failed = _pydicom_reference(_read(data))  # type: ignore[arg-type]
    for key in failed:
        assert (path.name, key) in PYDICOM_FAILURES, f"pydicom failed on {key}: unexpected"
        assert ours[key] == PYDICOM_FAILURES[(path.name, key)][1]
        ours.pop(key)
    mismatches = {
        key: (ours.get(key), reference.get(key))
        for key in sorted(set(ours) | set(reference))
        if ours.get(key) != reference.get(key)
    }
    assert not mismatches

    # warm cache (shared with every other file) gives the same text
    warm_cache = _SHARED_CACHE
    first = dataset_to_json(ds, cache=warm_cache, bulk_threshold=OUR_EQUIVALENT_THRESHOLD)
    second = dataset_to_json(ds, cache=warm_cache, bulk_threshold=OUR_EQUIVALENT_THRESHOLD)
    assert first == second == cold


_SHARED_CACHE = JsonEncoderCache()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_enough_files_checked_and_skips_bounded() -> None:
    readable = [p for p in ALL_FILES if _read(p) is not None]
    assert len(readable) >= 60
    assert len(ALL_FILES) - len(readable) <= 10
    pydicom_readable = 0
    for path in readable:
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
            pydicom_readable += 1
        except Exception:
            pass
    assert pydicom_readable >= 60


def test_pydicom_failure_list_is_exact() -> None:
    seen = set()
    for name, key in PYDICOM_FAILURES:
        path = next(p for p in ALL_FILES if p.name == name)
        ds = _read(path)
        assert ds is not None
        _, failed = _pydicom_reference(ds)
        assert key in failed
        seen.add((name, key))
    assert seen == set(PYDICOM_FAILURES)


def test_same_content_any_transfer_syntax() -> None:
    """Byte order and implicit/explicit VR do not change the JSON."""
    names = ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"]
    cache = JsonEncoderCache()
    outputs = [
        dataset_to_json(_read(DATA_ROOT / "test_files" / n), cache=cache)  # type: ignore[arg-type]
        for n in names
    ]
    assert len(set(outputs)) == 1


def test_forced_reads_of_non_dicom_files_give_valid_json() -> None:
    for name in ("README.txt", "crayons.icc", "test1.json", "zipMR.gz", "rtplan.dump"):
        ds = pydicom.dcmread(DATA_ROOT / "test_files" / name, force=True, stop_before_pixels=True)
        assert isinstance(_strict_loads(dataset_to_json(ds, cache=JsonEncoderCache())), dict)


# --------------------------------------------------------------------------
# Character sets
# --------------------------------------------------------------------------


def _text_values(data: dict[str, Any], ds: Dataset, out: list[tuple[Any, Any]]) -> None:
    """Pairs (ours, pydicom's str) for every text/PN element, recursively."""
    for tag in list(ds._dict):
        elem = ds[tag]
        key = f"{tag:08X}"
        if elem.VR == "SQ":
            for item_json, item in zip(data[key].get("Value", []), elem.value, strict=True):
                _text_values(item_json, item, out)
        elif elem.VR == "PN":
            values = elem.value if elem.VM > 1 else [elem.value]
            ours = data[key].get("Value", [])
            if elem.VM:
                mine = [
                    "=".join(
                        [
                            pn.get("Alphabetic", ""),
                            pn.get("Ideographic", ""),
                            pn.get("Phonetic", ""),
                        ]
                    ).rstrip("=")
                    for pn in ours
                ]
                out.append((mine, [str(v) for v in values]))
        elif elem.VR in ("SH", "LO", "UC", "ST", "LT", "UT"):
            values = elem.value if elem.VM > 1 else [elem.value]
            expected = [str(v).strip(" \x00") for v in values] if elem.VM else []
            mine = [(v or "").strip(" \x00") for v in data[key].get("Value", [])]
            out.append((mine, expected))


@pytest.mark.parametrize("path", CHARSET_FILES, ids=lambda p: p.name)
def test_charset_files_decode_like_pydicom(path: Path) -> None:
    ds = _read(path)
    assert ds is not None
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))
    pairs: list[tuple[Any, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _text_values(data, _read(path), pairs)  # type: ignore[arg-type]
    assert pairs
    for mine, expected in pairs:
        assert mine == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chrH31.dcm",
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"},
        ),
        (
            "chrH32.dcm",
            {"Alphabetic": "ﾔﾏﾀﾞ^ﾀﾛｳ", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"},
        ),
        (
            "chrI2.dcm",
            {"Alphabetic": "Hong^Gildong", "Ideographic": "洪^吉洞", "Phonetic": "홍^길동"},
        ),
        ("chrX1.dcm", {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}),
        ("chrX2.dcm", {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}),
        ("chrKoreanMulti.dcm", {"Alphabetic": "김희중"}),
        ("chrGreek.dcm", {"Alphabetic": "Διονυσιος"}),
        ("chrHbrw.dcm", {"Alphabetic": "שרון^דבורה"}),
        ("chrRuss.dcm", {"Alphabetic": "Люкceмбypг"}),
        ("chrArab.dcm", {"Alphabetic": "قباني^لنزار"}),
        ("chrFren.dcm", {"Alphabetic": "Buc^Jérôme"}),
        ("chrGerm.dcm", {"Alphabetic": "Äneas^Rüdiger"}),
    ],
)
def test_charset_patient_names(name: str, expected: dict[str, str]) -> None:
    ds = _read(DATA_ROOT / "charset_files" / name)
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))  # type: ignore[arg-type]
    assert data["00100010"] == {"vr": "PN", "Value": [expected]}


def test_sequence_item_with_its_own_charset() -> None:
    # chrSQEncoding: UTF-8 dataset whose sequence item declares ISO 2022 IR 13/87
    ds = _read(DATA_ROOT / "charset_files" / "chrSQEncoding.dcm")
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))  # type: ignore[arg-type]
    item = data["00321064"]["Value"][0]
    assert item["00100010"]["Value"] == [
        {"Alphabetic": "ﾔﾏﾀﾞ^ﾀﾛｳ", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    # chrSQEncoding1: the item inherits the dataset's ISO 2022 charset
    ds = _read(DATA_ROOT / "charset_files" / "chrSQEncoding1.dcm")
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))  # type: ignore[arg-type]
    assert data["00321064"]["Value"][0]["00100010"] == item["00100010"]


def _roundtrip(ds: Dataset, *, implicit: bool = False, little: bool = True) -> Dataset:
    """Write ``ds`` to bytes and read it back, so that its elements are raw."""
    ds.file_meta = FileMetaDataset()
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = _read(buf.getvalue())
    assert back is not None
    return back


@pytest.mark.parametrize(
    ("charset", "name"),
    [
        ("GB18030", "Zhang^XiaoDong=张^小东"),  # like chrGB2312.dcm (not bundled offline)
        ("GBK", "Wang^XiaoDong=王^小东"),
        ("ISO_IR 192", "Buc^Jérôme=王^小東"),
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"),
        (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
        ("ISO_IR 144", "Люкceмбypг"),
        ("ISO_IR 100", "Äneas^Rüdiger"),
    ],
)
def test_written_charsets_roundtrip(charset: str | list[str], name: str) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.InstitutionName = name.split("=")[-1]
    ds.StudyDescription = name.replace("=", " ")
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    back = _roundtrip(ds)
    data = _strict_loads(dataset_to_json(back, cache=JsonEncoderCache()))
    groups = name.split("=")
    expected_pn = dict(zip(["Alphabetic", "Ideographic", "Phonetic"], groups, strict=False))
    assert data["00100010"]["Value"] == [expected_pn]
    assert data["00080080"]["Value"] == [groups[-1]]
    assert data["00081030"]["Value"] == [name.replace("=", " ")]
    reference, failed = _pydicom_reference(_roundtrip(ds))
    assert not failed
    assert data == reference


def test_iso_2022_ir_58_gb2312() -> None:
    """GB2312 through ISO 2022 escapes (ESC $ ) A before each GB2312 run).

    pydicom's writer emits no escape sequences for IR 58, so the value is built
    by hand (the byte layout other toolkits produce). pydicom keeps the literal
    ESC $ ) A in the decoded text; we drop it (documented difference).
    """
    value = "Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab".encode("latin-1")
    ds = _raw_dataset(
        (0x00080005, "CS", b"\\ISO 2022 IR 58"),
        (0x00100010, "PN", value),
        (0x00080080, "LO", value.split(b"=")[1]),
    )
    ds.set_original_encoding(False, True, ["iso8859", "iso_ir_58"])
    data = _encode(ds)
    assert data["00100010"]["Value"] == [{"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"}]
    assert data["00080080"]["Value"] == ["张^小东"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert str(ds.PatientName).replace("\x1b$)A", "") == "Zhang^XiaoDong=张^小东"


def test_undecodable_bytes_are_replaced() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    raw = RawDataElement(BaseTag(0x00100010), "PN", 4, b"\xff\xfe^A", 0, False, True)
    ds._dict[BaseTag(0x00100010)] = raw
    ds._dict[BaseTag(0x00081030)] = raw._replace(tag=BaseTag(0x00081030), VR="LO")
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))
    assert data["00100010"]["Value"] == [{"Alphabetic": "\ufffd\ufffd^A"}]
    assert data["00081030"]["Value"] == ["\ufffd\ufffd^A"]


# --------------------------------------------------------------------------
# Bulk data
# --------------------------------------------------------------------------


def _all_elements(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for key, elem in data.items():
        out.append((key, elem))
        if elem["vr"] == "SQ":
            for item in elem.get("Value", []):
                out.extend(_all_elements(item))
    return out


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "waveform_ecg.dcm"]
)
def test_bulk_data_has_vr_only_even_when_pixels_are_read(name: str) -> None:
    # read WITH pixel data: it must still not be emitted
    ds = pydicom.dcmread(DATA_ROOT / "test_files" / name)
    data = _strict_loads(dataset_to_json(ds, cache=JsonEncoderCache()))
    bulk = [(k, e) for k, e in _all_elements(data) if is_bulk_data_tag(int(k, 16))]
    assert bulk
    for key, elem in bulk:
        assert set(elem) == {"vr"}, key
    if "7FE00010" in data:
        assert data["7FE00010"] in ({"vr": "OW"}, {"vr": "OB"})


def test_bulk_data_tags() -> None:
    for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010, 0x60003000, 0x601E3000):
        assert is_bulk_data_tag(tag)
    for tag in (0x60013000, 0x60203000, 0x60003001, 0x00100010, 0x7FE00001):
        assert not is_bulk_data_tag(tag)


def test_binary_threshold() -> None:
    ds = Dataset()
    ds.add_new(0x00091010, "OB", b"\x01" * 1024)  # private OB, exactly at the limit
    ds.add_new(0x00091011, "OB", b"\x01" * 1025)  # over the limit
    ds.add_new(0x00091012, "UN", b"\x02\x03")
    ds.add_new(0x00091013, "OW", b"")
    back = _roundtrip(ds)
    data = _strict_loads(dataset_to_json(back, cache=JsonEncoderCache()))
    assert data["00091010"] == {
        "vr": "OB",
        "InlineBinary": base64.b64encode(b"\x01" * 1024).decode(),
    }
    assert data["00091011"] == {"vr": "OB"}
    assert data["00091012"] == {"vr": "UN", "InlineBinary": "AgM="}
    assert data["00091013"] == {"vr": "OW"}
    small = _strict_loads(dataset_to_json(back, cache=JsonEncoderCache(), bulk_threshold=1))
    assert small["00091010"] == {"vr": "OB"}
    assert small["00091012"] == {"vr": "UN"}


def test_deferred_values() -> None:
    path = DATA_ROOT / "test_files" / "CT_small.dcm"
    eager = dataset_to_json(
        pydicom.dcmread(path, stop_before_pixels=True), cache=JsonEncoderCache()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy_ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=16)
        lazy = dataset_to_json(lazy_ds, cache=JsonEncoderCache())
        # a shared cache must not confuse deferred (value None) with empty values
        shared = JsonEncoderCache()
        dataset_to_json(pydicom.dcmread(path, stop_before_pixels=True), cache=shared)
        again = dataset_to_json(
            pydicom.dcmread(path, stop_before_pixels=True, defer_size=16), cache=shared
        )
    assert lazy == eager == again


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------


def test_cache_is_bounded_by_entries() -> None:
    cache = JsonEncoderCache(max_entries=50)
    outputs = set()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "CT_small.dcm"):
        ds = _read(DATA_ROOT / "test_files" / name)
        text = dataset_to_json(ds, cache=cache)  # type: ignore[arg-type]
        assert text == dataset_to_json(ds, cache=JsonEncoderCache())  # type: ignore[arg-type]
        outputs.add(text)
        assert len(cache) <= 50
    assert cache.clears > 0 and len(outputs) == 3  # CT_small twice: same text
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == stats["lookups"]


def test_cache_is_bounded_by_bytes() -> None:
    cache = JsonEncoderCache(max_bytes=20_000)
    for _ in range(3):
        for name in ("CT_small.dcm", "MR_small.dcm"):
            dataset_to_json(_read(DATA_ROOT / "test_files" / name), cache=cache)  # type: ignore[arg-type]
            assert 0 < cache.nbytes <= 20_000
    assert cache.clears > 0


def test_cache_fills_and_hits() -> None:
    cache = JsonEncoderCache()
    ds = _read(DATA_ROOT / "test_files" / "MR_small.dcm")
    cold = dataset_to_json(ds, cache=cache)  # type: ignore[arg-type]
    misses = cache.misses
    assert misses == cache.lookups and len(cache) > 50
    warm = dataset_to_json(ds, cache=cache)  # type: ignore[arg-type]
    assert warm == cold
    # only the per-instance attributes (SOPInstanceUID, ...) are encoded again
    assert cache.misses - misses < 10


def test_cache_with_contexts_interleaved() -> None:
    """One cache across charsets, byte orders and thresholds gives cold results."""
    shared = JsonEncoderCache(max_entries=400)
    paths = CHARSET_FILES + [
        DATA_ROOT / "test_files" / n
        for n in ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "rtplan.dcm")
    ]
    for _ in range(2):
        for path in paths:
            for threshold in (4, 1024):
                ds = _read(path)
                assert ds is not None
                cold = dataset_to_json(ds, cache=JsonEncoderCache(), bulk_threshold=threshold)
                assert dataset_to_json(ds, cache=shared, bulk_threshold=threshold) == cold


def test_default_cache_is_used() -> None:
    ds = _read(DATA_ROOT / "test_files" / "rtdose.dcm")
    before = default_cache().lookups
    text = dataset_to_json(ds)  # type: ignore[arg-type]
    assert default_cache().lookups > before
    assert text == dataset_to_json(ds, cache=JsonEncoderCache())  # type: ignore[arg-type]


def test_cache_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        JsonEncoderCache(max_entries=0)


def test_private_vr_depends_on_creator_not_cached_across_creators() -> None:
    """Implicit VR: (0009,1001) is LO for GEMS_IDEN_01 and UN for an unknown creator."""
    shared = JsonEncoderCache()
    results = []
    for creator in ("GEMS_IDEN_01", "UNKNOWN CREATOR", "GEMS_IDEN_01"):
        ds = Dataset()
        ds.add_new(0x00090010, "LO", creator)
        ds.add_new(0x00091001, "LO", "FULL")
        back = _roundtrip(ds, implicit=True)
        assert back._dict[BaseTag(0x00091001)].VR is None
        data = _strict_loads(dataset_to_json(back, cache=shared))
        reference, failed = _pydicom_reference(_roundtrip(ds, implicit=True))
        assert not failed and data == reference
        results.append(data["00091001"])
    assert results[0] == {"vr": "LO", "Value": ["FULL"]}
    assert results[1] == {"vr": "UN", "InlineBinary": "RlVMTA=="}
    assert results[2] == results[0]


# --------------------------------------------------------------------------
# Value rules and robustness
# --------------------------------------------------------------------------


def _raw_dataset(*elements: tuple[int, str | None, bytes], little: bool = True) -> Dataset:
    ds = Dataset()
    implicit = any(vr is None for _, vr, _ in elements)
    ds.set_original_encoding(implicit, little, "iso8859")
    for tag, vr, value in elements:
        ds._dict[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr, len(value), value, 0, implicit, little
        )
    return ds


def _encode(ds: Dataset, **kwargs: Any) -> dict[str, Any]:
    text = dataset_to_json(ds, cache=JsonEncoderCache(), **kwargs)
    return dict(_strict_loads(text))


def test_number_strings() -> None:
    ds = _raw_dataset(
        (0x00180050, "DS", b"2.50"),
        (0x00200032, "DS", b"-83.9063\\+1\\.5 "),
        (0x00280030, "DS", b"1e400\\NaN "),
        (0x00281050, "DS", b"abc\\\\7"),
        (0x00200013, "IS", b" 12 "),
        (0x00200012, "IS", b"1.0\\1.5\\x1\\\\-3"),
        (0x00181060, "DS", b"   "),
    )
    text = dataset_to_json(ds, cache=JsonEncoderCache())
    assert '"00180050":{"vr":"DS","Value":[2.50]}' in text  # literal kept
    data = _strict_loads(text)
    assert data["00200032"]["Value"] == [-83.9063, 1.0, 0.5]
    assert data["00280030"]["Value"] == ["1e400", "NaN"]
    assert data["00281050"]["Value"] == ["abc", None, 7]
    assert data["00200013"]["Value"] == [12]
    assert data["00200012"]["Value"] == [1, "1.5", "x1", None, -3]
    assert data["00181060"] == {"vr": "DS"}


def test_binary_numbers_and_non_finite_floats() -> None:
    for little in (True, False):
        e = "<" if little else ">"
        ds = _raw_dataset(
            (0x00280010, "US", struct.pack(e + "H", 512)),
            (0x00281052, "SS", struct.pack(e + "2h", -1024, 7)),
            (0x00180088, "FD", struct.pack(e + "3d", 1.5, math.nan, -math.inf)),
            (0x00189219, "FL", struct.pack(e + "f", 0.1)),
            (0x00209165, "AT", struct.pack(e + "4H", 0x0020, 0x0032, 0x7FE0, 0x0010)),
            (0x00280011, "US", b"\x01\x02\x03"),  # wrong length
            (0x00189314, "SV", struct.pack(e + "q", -(2**40))),
            (0x00189315, "UV", struct.pack(e + "Q", 2**63)),
            little=little,
        )
        data = _encode(ds)
        assert data["00280010"] == {"vr": "US", "Value": [512]}
        assert data["00281052"] == {"vr": "SS", "Value": [-1024, 7]}
        assert data["00180088"] == {"vr": "FD", "Value": [1.5, "NaN", "-Infinity"]}
        assert data["00189219"] == {
            "vr": "FL",
            "Value": [struct.unpack("f", struct.pack("f", 0.1))[0]],
        }
        assert data["00209165"] == {"vr": "AT", "Value": ["00200032", "7FE00010"]}
        assert data["00280011"] == {"vr": "UN", "InlineBinary": "AQID"}
        assert data["00189314"]["Value"] == [-(2**40)]
        assert data["00189315"]["Value"] == [2**63]


def test_strings_padding_empty_values_and_pn() -> None:
    ds = _raw_dataset(
        (0x00080008, "CS", b"ORIGINAL \\ PRIMARY\\\\AXIAL "),
        (0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.2\x00"),
        (0x00080060, "CS", b"  "),
        (0x00081030, "LO", b" Head\\Neck "),
        (0x00081040, "UC", b" Dept \\ x "),
        (0x00204000, "LT", b"  line one\\two  "),
        (0x00100010, "PN", b"=Yamada\\Doe^John\\\\=\\ "),
        (0x00100020, "LO", b"\\"),
        (0x00080090, "PN", b"=="),
        (0x00081190, "UR", b"http://x/y "),
        (0x00080054, "AE", b" AET1 \\AET2"),
    )
    data = _encode(ds)
    assert data["00080008"]["Value"] == ["ORIGINAL", "PRIMARY", None, "AXIAL"]
    assert data["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
    assert data["00080060"] == {"vr": "CS"}
    assert data["00081030"]["Value"] == ["Head", "Neck"]
    assert data["00081040"]["Value"] == [" Dept", " x"]
    assert data["00204000"]["Value"] == ["  line one\\two"]
    assert data["00100010"]["Value"] == [
        {"Ideographic": "Yamada"},
        {"Alphabetic": "Doe^John"},
        None,
        None,
        None,
    ]
    assert data["00100020"]["Value"] == [None, None]
    assert data["00080090"] == {"vr": "PN"}
    assert data["00081190"]["Value"] == ["http://x/y"]
    assert data["00080054"]["Value"] == ["AET1", "AET2"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_odd_elements_are_encoded_faithfully() -> None:
    """Bytes that do not fit their VR are kept, as UN with those bytes: no placeholder."""
    bad_sequence = b"garbage!"  # no item: pydicom reads no item from it
    ds = _raw_dataset(
        (0x00100010, "XX", b"abcd"),  # unknown VR
        (0x00100020, "\x00\x01", b"ab"),  # garbage VR
        (0x00280010, "US", b""),  # empty
        (0x00091001, "UN", b"\x00\x01"),  # private, no creator
        (0x00080000, "UL", struct.pack("<L", 10)),  # group length: omitted
        (0x00281101, "US", struct.pack("<3H", 0, 0, 16)),
        (0x00209165, "AT", b"\x20\x00\x32\x00\x7f"),  # not a multiple of 4 bytes
        (0x00081115, "SQ", bad_sequence),
        (0x00081111, "SQ", b"\xfe\xff\x00\xe0"),  # pydicom's convert_SQ raises on it
        (0x00101000, "XX", b""),  # unknown VR, no value
    )
    ds._dict[BaseTag(0x00100030)] = DataElement(0x00100030, "DA", "20000101")
    ds._dict[BaseTag(0x00100040)] = DataElement(0x00100040, "CS", ["M", "F"])
    ds._dict[BaseTag(0x00101010)] = DataElement(0x00101010, "AS", None)
    ds._dict[BaseTag(0x00081140)] = DataElement(0x00081140, "SQ", Sequence([]))
    ds._dict[BaseTag(0x00081030)] = DataElement(0x00081030, "LO", b"Head ")  # bytes, converted
    data = _encode(ds)
    assert data["00100010"] == {"vr": "UN", "InlineBinary": "YWJjZA=="}
    assert data["00100020"] == {"vr": "UN", "InlineBinary": "YWI="}
    assert data["00280010"] == {"vr": "US"}
    assert data["00091001"] == {"vr": "UN", "InlineBinary": "AAE="}
    assert "00080000" not in data
    assert data["00209165"] == {"vr": "UN", "InlineBinary": "IAAyAH8="}
    assert data["00081115"] == {
        "vr": "UN",
        "InlineBinary": base64.b64encode(bad_sequence).decode(),
    }
    assert data["00081111"] == {"vr": "UN", "InlineBinary": "/v8A4A=="}
    assert data["00101000"] == {"vr": "UN"}  # nothing to keep
    assert data["00100030"] == {"vr": "DA", "Value": ["20000101"]}
    assert data["00100040"] == {"vr": "CS", "Value": ["M", "F"]}
    assert data["00101010"] == {"vr": "AS"}
    assert data["00081140"] == {"vr": "SQ"}
    assert data["00081030"] == {"vr": "LO", "Value": ["Head"]}
    assert list(data) == sorted(data)


def _converted(tag: int, vr: str, value: object) -> Dataset:
    """A dataset holding one converted element with ``value`` as is (no pydicom checks)."""
    ds = Dataset()
    elem = DataElement(tag, vr, None)
    elem._value = value
    ds._dict[BaseTag(tag)] = elem
    return ds


@pytest.mark.parametrize(
    ("tag", "vr", "value", "reason"),
    [
        (0x00181030, "LO", object(), "LO value of type object is not text"),
        (0x00100020, "LO", 12, "LO value of type int is not text"),
        (0x00280010, "US", "512", "'str' object cannot be interpreted as an integer"),
        (0x00280010, "US", 2.5, "'float' object cannot be interpreted as an integer"),
        (0x00180088, "FD", ["1.5"], "FD value of type str is not a number"),
        (0x00180050, "DS", [object()], "DS value of type object is not a number"),
        (0x00100010, "PN", [3], "PN value of type int is not a person name"),
        (0x00091010, "OB", [1, 2], "OB value of type list is not bytes"),
        (0x00091011, "XX", "text", "does not fit its VR and is not bytes"),
    ],
)
def test_unencodable_converted_values_raise(tag: int, vr: str, value: object, reason: str) -> None:
    """Values no VR can hold used to be str()-ed or replaced; now they are an error."""
    ds = _converted(tag, vr, value)
    with pytest.raises(DicomJsonError) as info:
        dataset_to_json(ds, cache=JsonEncoderCache())
    message = str(info.value)
    assert message.startswith(f"cannot encode element ({tag >> 16:04X},{tag & 0xFFFF:04X}): ")
    assert reason in message


def test_converted_date_and_time_values_are_written_like_pydicom() -> None:
    import datetime

    ds = _converted(0x00080020, "DA", datetime.date(2024, 2, 29))
    ds._dict[BaseTag(0x00080030)] = _converted(0x00080030, "TM", datetime.time(8, 30))._dict[
        BaseTag(0x00080030)
    ]
    data = _encode(ds)
    assert data["00080020"] == {"vr": "DA", "Value": ["20240229"]}
    assert data["00080030"] == {"vr": "TM", "Value": ["083000"]}


def test_bulk_threshold_must_be_an_integer() -> None:
    with pytest.raises(TypeError):
        dataset_to_json(Dataset(), bulk_threshold="1024")  # type: ignore[arg-type]


def test_ambiguous_vrs_implicit() -> None:
    def build(pixel_rep: int) -> Dataset:
        ds = Dataset()
        ds.PixelRepresentation = pixel_rep
        ds.add_new(0x00280120, "SS" if pixel_rep else "US", -2000 if pixel_rep else 2000)
        item = Dataset()
        item.add_new(0x00283002, "US", [1, 0, 16])  # LUT Descriptor: one entry
        item.add_new(0x00283006, "US", [7])  # LUT Data -> US
        item2 = Dataset()
        item2.add_new(0x00283002, "US", [2, 0, 16])
        item2.add_new(0x00283006, "OW", b"\x01\x00\x02\x00")  # LUT Data -> OW
        ds.add_new(0x00283010, "SQ", Sequence([item, item2]))
        return _roundtrip(ds, implicit=True)

    for pixel_rep in (0, 1):
        back = build(pixel_rep)
        assert back._dict[BaseTag(0x00280120)].VR is None
        data = _encode(back)
        if pixel_rep:
            assert data["00280120"] == {"vr": "SS", "Value": [-2000]}
        else:
            assert data["00280120"] == {"vr": "US", "Value": [2000]}
        items = data["00283010"]["Value"]
        assert items[0]["00283006"] == {"vr": "US", "Value": [7]}
        assert items[1]["00283006"] == {"vr": "OW", "InlineBinary": "AQACAA=="}
        reference, failed = _pydicom_reference(build(pixel_rep))
        assert not failed and data == reference


def test_input_is_not_converted() -> None:
    ds = _read(DATA_ROOT / "test_files" / "CT_small.dcm")
    assert ds is not None
    raw_before = {tag for tag, elem in ds._dict.items() if isinstance(elem, RawDataElement)}
    dataset_to_json(ds, cache=JsonEncoderCache())
    raw_after = {tag for tag, elem in ds._dict.items() if isinstance(elem, RawDataElement)}
    assert raw_before == raw_after and len(raw_before) > 200


def test_converted_elements_are_encoded_and_cached() -> None:
    path = DATA_ROOT / "test_files" / "MR_small.dcm"
    expected = dataset_to_json(_read(path), cache=JsonEncoderCache())  # type: ignore[arg-type]
    cache = JsonEncoderCache()
    for _ in range(2):
        ds = _read(path)
        assert ds is not None
        _ = ds.PatientName, ds.ImageType, ds.PixelSpacing, ds.Rows, ds.StudyDate
        assert dataset_to_json(ds, cache=cache) == expected


def test_docstring_example_runs() -> None:
    result = doctest.testmod(dicom_json, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_no_pyspark_import() -> None:
    """The codec modules import no pyspark, transitively (a fresh interpreter)."""
    code = (
        "import sys\n"
        "import iac_spark.dicom.header, iac_spark.dicom.dicom_json, iac_spark.dicom.compat\n"
        "import iac_spark.dicom.attributes\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'pyspark')\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
