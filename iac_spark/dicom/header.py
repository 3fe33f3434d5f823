"""Parse a DICOM header from the front of a member, stopping before pixel data.

The caller hands a ``fetch(n)`` function that returns the next ``n`` bytes of the
member stream (a zip member inflates lazily), plus the member's full size from the
zip directory. We read a small prefix, parse it with pydicom
(``stop_before_pixels=True``) and read more only if the header is longer than
the prefix. Pixel data is not read, yet truncation is still caught: the pixel
element's declared length is checked against the member size, and so is the element
ending furthest in a header that ends early. Encapsulated (undefined-length) pixel data
must end in its sequence delimiter: its fragment items are walked by their 8-byte
headers (seeking past each fragment where the stream can seek; a deflated zip member
cannot, so its fragments are inflated and discarded), so a member cut inside its
fragments is an error even in metadata-only scans.

Every :class:`Header` field comes from that one parse: the identifiers, the promoted
catalog attributes (:mod:`iac_spark.dicom.attributes`) and, unless ``meta=False``, the
header as DICOM JSON (:mod:`iac_spark.dicom.dicom_json`).

Example:
    >>> import io
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> stream = io.BytesIO(raw)
    >>> h = parse_header(stream.read, len(raw), "CT_small.dcm")
    >>> h.modality, h.rows, h.columns, h.has_pixel_data
    ('CT', 128, 128, True)
    >>> h.study_date, h.slice_thickness, h.image_type
    (datetime.date(2004, 1, 19), 5.0, ('ORIGINAL', 'PRIMARY', 'AXIAL'))
    >>> h.meta[:40]
    '{"00080005":{"vr":"CS","Value":["ISO_IR '
    >>> parse_header(io.BytesIO(raw).read, len(raw), "CT_small.dcm", meta=False).meta is None
    True
"""

from __future__ import annotations

import datetime
import functools
import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, ParamSpec, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ..errors import (
    DicomJsonError,
    DicomParseError,
    EmptyMemberError,
    NotDicomError,
    TruncatedMemberError,
)
from ..inputs.archives import suffix
from .attributes import PROMOTED, read_attributes
from .compat import element_tags, elements, raw_value_span, read_dataset_before_pixels
from .dicom_json import JsonEncoderCache, dataset_to_json

__all__ = [
    "NON_DICOM_SUFFIXES",
    "PROMOTED",
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

# a CT/MR header is 2-4 KiB: inflate little first (inflating is a tenth of a scan's CPU) and
# grow geometrically when the header is longer
_INITIAL_PREFIX = 8 * 1024
_WINDOW = 1 << 20  # bytes read at a time when walking fragments of a sequential stream
_PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})
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
    """What one header parse yields: the zipdcm contract columns, the promoted catalog
    attributes (:data:`PROMOTED`, ``None`` where absent or invalid) and ``meta``, the header
    as DICOM JSON (``None`` when parsed with ``meta=False``).

    ``sop_instance_uid`` / ``sop_class_uid`` fall back to the file meta's Media Storage
    SOP Instance / Class UID (0002,0003) / (0002,0002) when the dataset lacks them.
    """

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
    study_date: datetime.date | None = None
    series_number: int | None = None
    study_description: str | None = None
    series_description: str | None = None
    body_part_examined: str | None = None
    patient_sex: str | None = None
    patient_age: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    pixel_spacing: tuple[float, ...] | None = None
    image_position_patient: tuple[float, ...] | None = None
    image_orientation_patient: tuple[float, ...] | None = None
    bits_allocated: int | None = None
    photometric_interpretation: str | None = None
    image_type: tuple[str, ...] | None = None
    meta: str | None = None


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


_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_META_LONG_VRS = frozenset({b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"})


class _Read(NamedTuple):
    """One parse of a header: the dataset and what the file meta group says."""

    ds: Dataset
    transfer_syntax_uid: str | None
    end: int  # offset where the dataset read stopped (pixel data or end of data)
    media_sop_class_uid: str | None
    media_sop_instance_uid: str | None


def _meta_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value is None:
        return None
    return str(value).split("\\", 1)[0].strip(" \x00") or None


def _fast_read(buf: bytes) -> _Read | None:
    """Read a Part-10 header without ``dcmread``'s overhead.

    Walks the explicit-VR-little-endian meta group with ``struct`` (keeping the transfer
    syntax and the Media Storage SOP Class / Instance UIDs) and hands the rest to
    pydicom's ``read_dataset``. Returns None (the caller falls back to ``dcmread``)
    for anything unusual: deflated data, a meta group that does not parse, or an
    explicit-VR transfer syntax whose first element has no valid VR.
    """
    pos = 132
    ts: str | None = None
    media: dict[int, bytes] = {}
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
        elif elem in (0x0002, 0x0003):
            media[elem] = buf[start : start + length]
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
    ds = read_dataset_before_pixels(fp, implicit, little)
    return _Read(ds, ts, fp.tell(), _meta_text(media.get(2)), _meta_text(media.get(3)))


def _dcmread(buf: bytes, has_preamble: bool) -> _Read:
    """The general path: ``dcmread`` (forced without a preamble), stopping before pixels."""
    fp = io.BytesIO(buf)
    ds = pydicom.dcmread(fp, force=not has_preamble, stop_before_pixels=True)
    file_meta = ds.file_meta
    if file_meta is None:
        return _Read(ds, None, fp.tell(), None, None)
    return _Read(
        ds,
        file_meta.get("TransferSyntaxUID"),
        fp.tell(),
        _meta_text(file_meta.get("MediaStorageSOPClassUID")),
        _meta_text(file_meta.get("MediaStorageSOPInstanceUID")),
    )


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
    meta: bool = True,
    promoted: bool = True,
) -> Header:
    """Parse the header of a DICOM member of ``size`` bytes, reading as little as possible.

    ``fetch(n)`` returns the next ``n`` bytes of the member (fewer only at its end); it may
    also have a ``skip(n)`` method that moves ``n`` bytes forward without returning them
    (a seek), used to pass over encapsulated pixel fragments; ``head`` is what the caller
    already read from the front. ``where`` (file + member)
    goes into every error message. ``cache`` memoises the DICOM JSON encoding
    (:class:`~iac_spark.dicom.dicom_json.JsonEncoderCache`); with ``meta=False`` the
    encoder is not run at all and ``Header.meta`` is None (the other fields are the same);
    with ``promoted=False`` the promoted attributes are not read (None), only the ``zipdcm``
    contract fields. Every field comes from the same single parse.

    Raises :class:`EmptyMemberError`, :class:`NotDicomError`,
    :class:`TruncatedMemberError`, :class:`DicomParseError` or (``meta=True`` only)
    :class:`DicomJsonError` naming ``where`` and the element that cannot be encoded.
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
            read = _fast_read(buf) if has_preamble else None
            if read is None:
                read = _dcmread(buf, has_preamble)
            if read.transfer_syntax_uid == DeflatedExplicitVRLittleEndian and not complete:
                raise EOFError("deflated dataset needs the whole member")
        except Exception as exc:
            if not complete:
                buf = _grow(buf, fetch, size, where)
                continue
            raise DicomParseError(f"{where}: {type(exc).__name__}: {exc}") from exc
        ds, ts, pos = read.ds, read.transfer_syntax_uid, read.end
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
        if length == 0xFFFFFFFF and tag == _PIXEL_DATA:
            _check_fragments(buf, end - length, size, fetch, where, bool(little))
    elif ts != DeflatedExplicitVRLittleEndian:
        _check_last_element(ds, size, where)
    if len(ds) == 0 and not has_pixels:
        raise NotDicomError(f"{where}: parsed as DICOM but holds no data elements")
    if ts is None:
        ts = _TS_BY_ENCODING.get((bool(implicit), bool(little)))
    meta_json: str | None = None
    if meta:
        try:
            meta_json = dataset_to_json(ds, cache=cache)
        except DicomJsonError as exc:
            raise DicomJsonError(f"{where}: {exc}") from exc
    fields = read_attributes(ds, promoted=promoted)
    if fields["sop_instance_uid"] is None:
        fields["sop_instance_uid"] = read.media_sop_instance_uid
    if fields["sop_class_uid"] is None:
        fields["sop_class_uid"] = read.media_sop_class_uid
    return Header(
        transfer_syntax_uid=str(ts) if ts else None,
        has_pixel_data=has_pixels,
        meta=meta_json,
        **fields,
    )


def _grow(buf: bytes, fetch: Callable[[int], bytes], size: int, where: str) -> bytes:
    want = min(max(len(buf), _INITIAL_PREFIX), size - len(buf))
    more = fetch(want)
    if not more:
        raise TruncatedMemberError(
            f"{where}: member ends after {len(buf)} bytes but its directory declares {size}"
        )
    return buf + more


def _check_fragments(
    buf: bytes, start: int, size: int, fetch: Callable[[int], bytes], where: str, little: bool
) -> None:
    """Encapsulated pixel data (undefined length) must end in its sequence delimiter
    (FFFE,E0DD) within the member: walk the fragment items from ``start`` by their 8-byte
    headers.

    Headers inside ``buf`` (the prefix already read) are read from it. Past it, when
    ``fetch`` has a ``skip(n)`` (a seek: bare files, stored zip members, bytes in memory),
    each fragment is passed by a seek and only its 8-byte header is read; otherwise (a
    deflated zip member, a gzip stream: sequential) the rest of the member is read in
    1 MiB windows, headers picked out of them and everything else discarded. Cost: one
    small read per fragment, or inflating the rest of the member once; memory stays at one
    window. A fragment running past the member, a member ending without the delimiter, or
    an item that is not a fragment is an error (:class:`TruncatedMemberError` /
    :class:`DicomParseError`).
    """
    item = struct.Struct("<HHL" if little else ">HHL")
    skip: Callable[[int], object] | None = getattr(fetch, "skip", None)
    win, wstart = buf, 0  # bytes of the member from offset wstart on
    pos = len(buf)  # the stream's position: the end of the window
    p = start
    n = 0
    while True:
        if p + 8 > size:
            raise TruncatedMemberError(
                f"{where}: encapsulated pixel data ends without its sequence delimiter "
                f"(FFFE,E0DD): the member ends at byte {size}, after {n} items"
            )
        off = p - wstart
        if off + 8 > len(win):
            keep = win[off:] if off < len(win) else b""
            if p > pos:  # a fragment longer than what is in hand: pass it
                _skip(fetch, skip, p - pos)
                pos = p
            want = 8 - len(keep) if skip is not None else min(_WINDOW, size - pos)
            more = fetch(max(want, 8 - len(keep)))
            win, wstart, off = keep + more, p, 0
            pos += len(more)
            if len(win) < 8:
                raise TruncatedMemberError(
                    f"{where}: member ends inside its encapsulated pixel data (before byte "
                    f"{p + 8}) but its directory declares {size} bytes"
                )
        group, elem, length = item.unpack_from(win, off)
        tag = group << 16 | elem
        if tag == _SEQUENCE_DELIMITER:
            return
        if tag != _ITEM or length == 0xFFFFFFFF:
            what = "undefined length" if tag == _ITEM else f"tag ({group:04X},{elem:04X})"
            raise DicomParseError(
                f"{where}: encapsulated pixel data: item {n + 1} at offset {p} has {what}, "
                "not a fragment (FFFE,E000) of defined length"
            )
        n += 1
        p += 8 + length
        if p > size:
            raise TruncatedMemberError(
                f"{where}: pixel data fragment {n} declares {length} bytes ending at offset "
                f"{p}, but the member has only {size} bytes"
            )


def _skip(fetch: Callable[[int], bytes], skip: Callable[[int], object] | None, n: int) -> None:
    if skip is not None:
        skip(n)
        return
    while n > 0:
        chunk = fetch(min(n, _WINDOW))
        if not chunk:
            return
        n -= len(chunk)


def _check_last_element(ds: Dataset, size: int, where: str) -> None:
    """A header that ends without pixel data is truncated if a value runs past the end.

    The element ending furthest (in file order, whatever its tag: a private element with
    an absurd length swallows what follows it) is the one checked.
    """
    if not len(ds):
        return
    stored = elements(ds)
    tags = element_tags(stored)
    end, last_tag, length = -1, 0, 0
    for tag, elem in zip(tags, stored.values(), strict=True):
        span = raw_value_span(elem)
        if span is not None and span[1] != 0xFFFFFFFF and span[0] + span[1] > end:
            end, last_tag, length = span[0] + span[1], tag, span[1]
    if end < 0:
        return
    if end > size:
        raise TruncatedMemberError(
            f"{where}: element ({last_tag >> 16:04X},{last_tag & 0xFFFF:04X}) declares {length} bytes "
            f"ending at offset {end}, but the member has only {size} bytes"
        )
    if 0 < size - end < 8:
        raise TruncatedMemberError(
            f"{where}: member ends {size - end} bytes into an element header after offset {end}"
        )
