"""Uncompressed monochrome pixel data straight from Part-10 bytes, equal to pydicom's.

``pydicom.dcmread(...).pixel_array`` builds a whole dataset before it looks at the pixels;
for the common training case (native little-endian transfer syntax, one sample per pixel,
MONOCHROME1/2, 8/16/32 bits allocated) that parse costs more than the decompression of the
record. :func:`native_pixel_array` walks the element headers instead (``struct``, values
left unread except the few of group 0028 it needs), finds the pixel data and returns exactly
what pydicom returns: the same dtype and shape ``(rows, columns)`` or ``(frames, rows,
columns)``, unused high bits corrected the way pydicom corrects them (masked when unsigned,
sign-extended when signed), a writeable copy. Anything else — compressed or big-endian
transfer syntaxes, colour, a file without a preamble or file meta, a pixel data length that
does not match the attributes, an element it cannot walk — gives ``None``, and the caller
asks pydicom (:mod:`iac_spark.data.decode`).

Example:
    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> arr = native_pixel_array(raw)
    >>> arr.shape, arr.dtype, bool((arr == pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array).all())
    ((128, 128), dtype('int16'), True)
    >>> native_pixel_array(open(get_testdata_file("MR_small_RLE.dcm"), "rb").read()) is None
    True
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ALLOCATE", "NATIVE_TRANSFER_SYNTAXES", "native_pixel_array"]

#: How :func:`native_pixel_array` allocates its result, ``(shape, dtype) -> array`` (None:
#: ``numpy.empty``). Worker processes set it to put pixels straight into shared memory
#: (:mod:`iac_spark.data.workers`).
ALLOCATE: ContextVar[Callable[[tuple[int, ...], Any], np.ndarray] | None] = ContextVar(
    "iac_spark_pixel_allocate", default=None
)

#: Transfer syntaxes read here (value: implicit VR), all little endian and not encapsulated.
NATIVE_TRANSFER_SYNTAXES: Final[dict[str, bool]] = {
    "1.2.840.10008.1.2": True,
    "1.2.840.10008.1.2.1": False,
}

_UNDEFINED: Final = 0xFFFFFFFF
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA: Final = 0x7FE00010
_FIRST_PIXEL_TAG: Final = 0x7FE00008  # float / double float / pixel data: stop the walk
_MAX_DEPTH: Final = 16
_US = struct.Struct("<H")
_UL = struct.Struct("<L")
_TAG = struct.Struct("<HH")

# group 0028 attributes the decode needs
_SPP, _PHOTOMETRIC, _FRAMES, _ROWS, _COLUMNS = (
    0x00280002,
    0x00280004,
    0x00280008,
    0x00280010,
    0x00280011,
)
_ALLOCATED, _STORED, _REPRESENTATION = 0x00280100, 0x00280101, 0x00280103
_WANTED: Final = frozenset(
    {_SPP, _PHOTOMETRIC, _FRAMES, _ROWS, _COLUMNS, _ALLOCATED, _STORED, _REPRESENTATION}
)


class _Unwalkable(Exception):
    """An element header the walk does not understand: leave the file to pydicom."""


def _header(buf: bytes, pos: int, implicit: bool) -> tuple[int, int, int, bytes | None]:
    """(tag, value length, value offset, VR) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Unwalkable
    group, elem = _TAG.unpack_from(buf, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, _UL.unpack_from(buf, pos + 4)[0], pos + 8, None
    vr = buf[pos + 4 : pos + 6]
    if not (b"AA" <= vr <= b"ZZ"):
        raise _Unwalkable  # says explicit, is implicit (pydicom copes with that)
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Unwalkable
        return tag, _UL.unpack_from(buf, pos + 8)[0], pos + 12, vr
    return tag, _US.unpack_from(buf, pos + 6)[0], pos + 8, vr


def _skip_items(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Skip the items of an undefined-length value starting at ``pos``; returns the end."""
    if depth > _MAX_DEPTH:
        raise _Unwalkable
    while True:
        tag, length, start, _ = _header(buf, pos, True)
        if tag == _SEQ_END:
            return start
        if tag != _ITEM:
            raise _Unwalkable
        pos = start + length if length != _UNDEFINED else _skip_item(buf, start, implicit, depth)


def _skip_item(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Skip the elements of an undefined-length item up to its delimiter; returns the end."""
    while True:
        tag, length, start, vr = _header(buf, pos, implicit)
        if tag == _ITEM_END:
            return start
        if length == _UNDEFINED:
            # an undefined-length UN holds implicit VR little endian (PS3.5 6.2.2)
            pos = _skip_items(buf, start, implicit or vr == b"UN", depth + 1)
        else:
            pos = start + length


_Values = dict[int, tuple[bytes | None, bytes]]  # tag -> (explicit VR or None, value bytes)


def _us(values: _Values, tag: int) -> int | None:
    """The first value of a US element (dictionary VR when implicit)."""
    got = values.get(tag)
    if got is None or got[0] not in (None, b"US") or len(got[1]) < 2:
        return None
    return int(_US.unpack_from(got[1])[0])


def _text(values: _Values, tag: int) -> bytes | None:
    got = values.get(tag)
    if got is None or got[0] not in (None, b"CS"):
        return None
    return got[1].split(b"\\", 1)[0].strip(b" \x00")


def _frames(values: _Values) -> int | None:
    """NumberOfFrames (IS text): 1 when absent; None when invalid (pydicom decides then)."""
    got = values.get(_FRAMES)
    if got is None:
        return 1
    if got[0] not in (None, b"IS"):
        return None
    text = got[1].strip(b" \x00")
    return int(text) if text.isdigit() and int(text) >= 1 else None


def _dataset_start(buf: bytes) -> tuple[int, bool] | None:
    """(offset after the file meta group, implicit VR) for a native transfer syntax."""
    if len(buf) < 140 or buf[128:132] != b"DICM":
        return None
    pos, ts = 132, None
    while pos + 8 <= len(buf):
        if _US.unpack_from(buf, pos)[0] != 0x0002:
            break
        tag, length, start, _ = _header(buf, pos, False)
        if length == _UNDEFINED or start + length > len(buf):
            return None
        if tag == 0x00020010:
            ts = buf[start : start + length].rstrip(b" \x00").decode("ascii", "replace")
        pos = start + length
    implicit = NATIVE_TRANSFER_SYNTAXES.get(ts or "")
    return None if implicit is None else (pos, implicit)


def native_pixel_array(p10: bytes) -> np.ndarray | None:
    """pydicom's ``pixel_array`` of a simple uncompressed monochrome file, or ``None``.

    ``None`` means "not a case handled here", never "no pixels": the caller decodes with
    pydicom then (which may raise).
    """
    try:
        found = _walk(p10)
    except (_Unwalkable, struct.error, ValueError):
        return None
    if found is None:
        return None
    values, offset, length = found
    rows, cols, spp = _us(values, _ROWS), _us(values, _COLUMNS), _us(values, _SPP)
    allocated, stored = _us(values, _ALLOCATED), _us(values, _STORED)
    signed = _us(values, _REPRESENTATION)
    frames = _frames(values)
    photometric = _text(values, _PHOTOMETRIC)
    if (
        photometric not in (b"MONOCHROME1", b"MONOCHROME2")
        or spp != 1
        or allocated not in (8, 16, 32)
        or signed not in (0, 1)
        or stored is None
        or not 1 <= stored <= allocated
        or not rows
        or not cols
        or frames is None
    ):
        return None
    size = rows * cols * frames * (allocated // 8)
    if length not in (size, size + 1) or offset + size > len(p10):
        return None

    import numpy as np

    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    shape = (rows, cols) if frames == 1 else (frames, rows, cols)
    view = np.frombuffer(p10, dtype=dtype, count=rows * cols * frames, offset=offset)
    view = view.reshape(shape)
    allocate = ALLOCATE.get()
    arr = np.empty(shape, dtype) if allocate is None else allocate(shape, dtype)
    shift = allocated - stored
    if not shift:
        np.copyto(arr, view)
    elif signed:  # pydicom's unused-bits correction: shift left, then back (sign-extends)
        np.left_shift(view, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    else:  # the same on unsigned values: the high bits cleared, in one pass
        np.bitwise_and(view, dtype.type((1 << stored) - 1), out=arr)
    return arr


def _walk(buf: bytes) -> tuple[_Values, int, int] | None:
    """The wanted group-0028 values, and (offset, length) of the pixel data value."""
    start = _dataset_start(buf)
    if start is None:
        return None
    pos, implicit = start
    values: _Values = {}
    n = len(buf)
    unpack_tag, unpack_us, unpack_ul = _TAG.unpack_from, _US.unpack_from, _UL.unpack_from
    long_vrs, wanted = _LONG_VRS, _WANTED
    while pos + 8 <= n:
        # the common case inline (explicit VR, short or long form); the rest via _header
        group, elem = unpack_tag(buf, pos)
        tag = group << 16 | elem
        vr = None if implicit or group == 0xFFFE else buf[pos + 4 : pos + 6]
        if vr is not None and b"AA" <= vr <= b"ZZ" and vr not in long_vrs:
            length, value_at = unpack_us(buf, pos + 6)[0], pos + 8
        elif vr is not None and vr in long_vrs and pos + 12 <= n:
            length, value_at = unpack_ul(buf, pos + 8)[0], pos + 12
        else:
            tag, length, value_at, vr = _header(buf, pos, implicit)
        if tag >= _FIRST_PIXEL_TAG:
            if tag != _PIXEL_DATA or length == _UNDEFINED:
                return None
            return values, value_at, length
        if length == _UNDEFINED:
            pos = _skip_items(buf, value_at, implicit or vr == b"UN", 0)
            continue
        if tag in wanted:
            values[tag] = (vr, buf[value_at : value_at + length])
        pos = value_at + length
    return None
