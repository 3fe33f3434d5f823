"""Parse a DICOM header from the front of a member, stopping before pixel data.

The caller hands a ``fetch(n)`` function that returns the next ``n`` bytes of the
member stream (a zip member inflates lazily), plus the member's full size from the
zip directory. We read a small prefix, parse it with pydicom
(``stop_before_pixels=True``) and read more only if the header is longer than
the prefix. Pixel data is never inflated, yet truncation is still caught: the
pixel element's declared length is checked against the member size, and so is
the last element of a header that ends early.

Example:
    >>> import io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> stream = io.BytesIO(raw)
    >>> h = parse_header(stream.read, len(raw), "CT_small.dcm")
    >>> h.modality, h.rows, h.columns, h.has_pixel_data
    ('CT', 128, 128, True)
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import _at_pixel_data, read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ..errors import DicomParseError, EmptyMemberError, NotDicomError, TruncatedMemberError
from ..inputs.archives import suffix
from .dicom_json import JsonEncoderCache, dataset_to_json

__all__ = [
    "NON_DICOM_SUFFIXES",
    "Header",
    "is_plainly_not_dicom",
    "parse_header",
]

#: Suffixes that are plainly not DICOM when the content has no ``DICM`` magic either.
NON_DICOM_SUFFIXES = frozenset(
    [
        ".txt",
        ".md",
        ".rst",
        ".csv",
        ".tsv",
        ".json",
        ".xml",
        ".html",
        ".htm",
        ".pdf",
        ".jpg",
        ".jpeg",
        ".png",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".doc",
        ".docx",
        ".xls",
        ".xlsx",
        ".ppt",
        ".pptx",
        ".log",
        ".ini",
        ".cfg",
        ".yaml",
        ".yml",
        ".rtf",
        ".sh",
        ".bat",
        ".exe",
        ".dll",
        ".py",
        ".md5",
        ".sha1",
        ".sha256",
        ".sig",
        ".asc",
        ".nii",
        ".gz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".tar",
        ".mp4",
        ".avi",
        ".mov",
        ".db",
        ".ds_store",
    ]
)
_NON_DICOM_NAMES = frozenset({"license", "readme", "thumbs.db", ".ds_store", "manifest"})

P = ParamSpec("P")
R = TypeVar("R")

_INITIAL_PREFIX = 32 * 1024
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_PLAUSIBLE_FIRST_GROUPS = frozenset({0x0002, 0x0004, 0x0008})
_TS_BY_ENCODING = {
    (True, True): "1.2.840.10008.1.2",
    (False, True): "1.2.840.10008.1.2.1",
    (False, False): "1.2.840.10008.1.2.2",
}


@dataclass(frozen=True, slots=True)
class Header:
    """The contract columns taken from one DICOM header (``meta`` is DICOM JSON)."""

    sop_instance_uid: str | None
    series_instance_uid: str | None
    study_instance_uid: str | None
    patient_id: str | None
    modality: str | None
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    instance_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int | None
    has_pixel_data: bool
    meta: str


def is_plainly_not_dicom(name: str, head: bytes) -> bool:
    """A known non-DICOM name (``LICENSE.txt``, ``__MACOSX/...``) whose bytes lack ``DICM``.

    >>> is_plainly_not_dicom("TCIA/LICENSE.txt", b"MIT License")
    True
    >>> is_plainly_not_dicom("series/IM0001", b"\\x00" * 132)
    False
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return False
    last = name.rsplit("!", 1)[-1]
    base = last.rsplit("/", 1)[-1].lower()
    if last.startswith("__MACOSX/") or "/__MACOSX/" in last or base.startswith("._"):
        return True
    return suffix(name) in NON_DICOM_SUFFIXES or base in _NON_DICOM_NAMES


def _plausible_raw_dataset(head: bytes) -> bool:
    """Without a preamble, accept only data that starts like a dataset (group 0002/0004/0008)."""
    if len(head) < 8:
        return False
    group_le = struct.unpack_from("<H", head)[0]
    group_be = struct.unpack_from(">H", head)[0]
    return group_le in _PLAUSIBLE_FIRST_GROUPS or group_be in _PLAUSIBLE_FIRST_GROUPS


def _pixel_element_end(
    buf: bytes, pos: int, implicit: bool, little: bool
) -> tuple[int, int, int] | None:
    """(tag, declared length, end offset) of the element starting at ``pos``; None if not in ``buf``."""
    if pos + 8 > len(buf):
        return None
    endian = "<" if little else ">"
    group, elem = struct.unpack_from(endian + "HH", buf, pos)
    tag = group << 16 | elem
    vr = buf[pos + 4 : pos + 6]
    if implicit or not (b"AA" <= vr <= b"ZZ"):  # some writers switch to implicit VR mid-file
        length = struct.unpack_from(endian + "L", buf, pos + 4)[0]
        header_len = 8
    elif vr in _LONG_VRS:
        if pos + 12 > len(buf):
            return None
        length = struct.unpack_from(endian + "L", buf, pos + 8)[0]
        header_len = 12
    else:
        length = struct.unpack_from(endian + "H", buf, pos + 6)[0]
        header_len = 8
    return tag, length, pos + header_len + length


def _raw_value(ds: Dataset, tag: int) -> object:
    """An element's value without pydicom's per-element conversion (bytes while still raw)."""
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    return None if elem is None else elem.value


def _text(ds: Dataset, tag: int, keyword: str) -> str | None:
    """First value of a string element. ASCII bytes (UIDs, CS, most IDs) are decoded here
    directly; anything else goes through pydicom so the character set is honoured."""
    value = _raw_value(ds, tag)
    if isinstance(value, bytes):
        if value.isascii():
            text = value.decode("ascii").split("\\", 1)[0].strip(" \x00")
            return text or None
        try:
            value = ds.get(keyword)
        except Exception:
            return None
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # type: ignore[arg-type, index]
    return (str(value).strip(" \x00") or None) if value is not None else None


def _int(ds: Dataset, tag: int) -> int | None:
    """First value of an IS / US element as int (None when absent, invalid or out of int32)."""
    value = _raw_value(ds, tag)
    try:
        if isinstance(value, bytes):
            elem = ds._dict[tag]  # type: ignore[index]
            vr = getattr(elem, "VR", None)
            if vr in ("US", "SS") or (vr is None and len(value) == 2 and tag in _BINARY_INT_TAGS):
                little = getattr(elem, "is_little_endian", True)
                number = int(struct.unpack("<H" if little else ">H", value[:2])[0])
            else:
                text = value.decode("ascii", "replace").split("\\", 1)[0].strip(" \x00")
                if not text:
                    return None
                number = int(float(text)) if "." in text else int(text)
        elif value is None or value == "":
            return None
        else:
            if not isinstance(value, (int, float, str)) and hasattr(value, "__getitem__"):
                value = value[0]
            number = int(value)  # type: ignore[call-overload]
    except Exception:
        return None
    return number if -(2**31) <= number < 2**31 else None


_BINARY_INT_TAGS = frozenset({0x00280010, 0x00280011})  # Rows, Columns (US)

_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_META_LONG_VRS = frozenset({b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"})


def _fast_read(buf: bytes) -> tuple[Dataset, str, int] | None:
    """Read a Part-10 header without ``dcmread``'s overhead: (dataset, transfer syntax, stop offset).

    Walks the explicit-VR-little-endian meta group with ``struct`` and hands the rest to
    pydicom's ``read_dataset``. Returns None (the caller falls back to ``dcmread``)
    for anything unusual: deflated data, a meta group that does not parse, or an
    explicit-VR transfer syntax whose first element has no valid VR.
    """
    pos, ts = 132, None
    n = len(buf)
    while pos + 8 <= n:
        group, elem = struct.unpack_from("<HH", buf, pos)
        if group != 2:
            break
        vr = buf[pos + 4 : pos + 6]
        if vr in _META_LONG_VRS:
            if pos + 12 > n:
                return None
            length = struct.unpack_from("<L", buf, pos + 8)[0]
            start = pos + 12
        elif b"AA" <= vr <= b"ZZ":
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            start = pos + 8
        else:
            return None
        if length == 0xFFFFFFFF or start + length > n:
            return None
        if elem == 0x0010:
            ts = buf[start : start + length].decode("ascii", "replace").strip(" \x00")
        pos = start + length
    if ts == _EXPLICIT_LE or (ts is not None and ts.startswith("1.2.840.10008.1.2.4")):
        implicit, little = False, True
    elif ts == _IMPLICIT_LE:
        implicit, little = True, True
    elif ts == _EXPLICIT_BE:
        implicit, little = False, False
    else:
        return None  # deflated, private or missing transfer syntax: let dcmread decide
    if not implicit and pos + 6 <= n and not (b"AA" <= buf[pos + 4 : pos + 6] <= b"ZZ"):
        return None  # says explicit, is implicit: dcmread knows how to cope
    fp = io.BytesIO(buf)
    fp.seek(pos)
    ds = read_dataset(fp, implicit, little, stop_when=_at_pixel_data)
    return ds, ts, fp.tell()


def _quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with pydicom's lenient-parse warnings silenced (a scan over 100,000 files
    must not flood executor logs; real problems become error rows)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)

    return wrapper


@_quiet
def parse_header(
    fetch: Callable[[int], bytes],
    size: int,
    where: str,
    *,
    head: bytes = b"",
    cache: JsonEncoderCache | None = None,
) -> Header:
    """Parse the header of a DICOM member of ``size`` bytes, reading as little as possible.

    ``fetch(n)`` returns the next ``n`` bytes of the member (fewer only at its end);
    ``head`` is what the caller already read from the front. ``where`` (file + member)
    goes into every error message. Raises :class:`EmptyMemberError`,
    :class:`NotDicomError`, :class:`TruncatedMemberError` or :class:`DicomParseError`.
    Callers skip plainly non-DICOM members with :func:`is_plainly_not_dicom` first.
    pydicom's warnings about lenient parsing (odd VRs, invalid values) are silenced: a
    scan over 100,000 files must not flood executor logs; real problems are error rows.
    """
    if size == 0:
        raise EmptyMemberError(f"{where}: zero-byte member")
    buf = head
    if len(buf) < min(size, _INITIAL_PREFIX):
        buf += fetch(min(size, _INITIAL_PREFIX) - len(buf))
    if not buf:
        raise TruncatedMemberError(f"{where}: declared {size} bytes but no data could be read")
    has_preamble = len(buf) >= 132 and buf[128:132] == b"DICM"
    if not has_preamble and not _plausible_raw_dataset(buf):
        raise NotDicomError(
            f"{where}: no DICM preamble and the data does not start like a DICOM dataset "
            f"(first bytes {buf[:8].hex()})"
        )
    ts: str | None = None
    while True:
        complete = len(buf) >= size
        try:
            fast = _fast_read(buf) if has_preamble else None
            if fast is not None:
                ds, ts, pos = fast
            else:
                fp = io.BytesIO(buf)
                ds = pydicom.dcmread(fp, force=not has_preamble, stop_before_pixels=True)
                ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
                pos = fp.tell()
            if ts == DeflatedExplicitVRLittleEndian and not complete:
                raise EOFError("deflated dataset needs the whole member")
        except Exception as exc:
            if not complete:
                buf = _grow(buf, fetch, size, where)
                continue
            raise DicomParseError(f"{where}: {type(exc).__name__}: {exc}") from exc
        implicit, little = ds.original_encoding
        pixel = None
        if pos < len(buf) and ts != DeflatedExplicitVRLittleEndian:
            pixel = _pixel_element_end(buf, pos, bool(implicit), bool(little))
            if pixel is None and not complete:
                buf = _grow(buf, fetch, size, where)
                continue
        elif not complete:
            buf = _grow(buf, fetch, size, where)
            continue
        break
    if len(buf) > size:
        raise TruncatedMemberError(
            f"{where}: member holds more bytes than the {size} its directory declares"
        )
    has_pixels = pixel is not None and pixel[0] in _PIXEL_TAGS
    if pixel is not None:
        tag, length, end = pixel
        if length != 0xFFFFFFFF and end > size:
            raise TruncatedMemberError(
                f"{where}: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes ending at "
                f"offset {end}, but the member has only {size} bytes"
            )
    elif ts != DeflatedExplicitVRLittleEndian:
        _check_last_element(ds, size, where)
    if len(ds) == 0 and not has_pixels:
        raise NotDicomError(f"{where}: parsed as DICOM but holds no data elements")
    if ts is None:
        ts = _TS_BY_ENCODING.get((bool(implicit), bool(little)))
    try:
        meta = dataset_to_json(ds, cache=cache)
    except Exception as exc:  # the encoder is defensive; this is a last resort
        raise DicomParseError(f"{where}: cannot encode header as DICOM JSON: {exc}") from exc
    return Header(
        sop_instance_uid=_text(ds, 0x00080018, "SOPInstanceUID"),
        series_instance_uid=_text(ds, 0x0020000E, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, 0x0020000D, "StudyInstanceUID"),
        patient_id=_text(ds, 0x00100020, "PatientID"),
        modality=_text(ds, 0x00080060, "Modality"),
        sop_class_uid=_text(ds, 0x00080016, "SOPClassUID"),
        transfer_syntax_uid=str(ts) if ts else None,
        instance_number=_int(ds, 0x00200013),
        rows=_int(ds, 0x00280010),
        columns=_int(ds, 0x00280011),
        number_of_frames=_int(ds, 0x00280008),
        has_pixel_data=has_pixels,
        meta=meta,
    )


def _grow(buf: bytes, fetch: Callable[[int], bytes], size: int, where: str) -> bytes:
    want = min(max(len(buf), _INITIAL_PREFIX), size - len(buf))
    more = fetch(want)
    if not more:
        raise TruncatedMemberError(
            f"{where}: member ends after {len(buf)} bytes but its directory declares {size}"
        )
    return buf + more


def _check_last_element(ds: Dataset, size: int, where: str) -> None:
    """A header that ends without pixel data is truncated if its last value runs past the end."""
    if not len(ds):
        return
    last_tag = max(ds._dict)
    elem = ds._dict[last_tag]
    length = getattr(elem, "length", None)
    value_tell = getattr(elem, "value_tell", None)
    if length is None or value_tell is None or length == 0xFFFFFFFF:
        return
    end = value_tell + length
    if end > size:
        raise TruncatedMemberError(
            f"{where}: element ({last_tag >> 16:04X},{last_tag & 0xFFFF:04X}) declares {length} bytes "
            f"ending at offset {end}, but the member has only {size} bytes"
        )
    if 0 < size - end < 8:
        raise TruncatedMemberError(
            f"{where}: member ends {size - end} bytes into an element header after offset {end}"
        )
