"""Bytes out: a fast Part-10 encoder for series of similar slices, and reproducible zips.

Encoding ~100 header elements through pydicom costs several ms per slice,
more than rendering the pixels.  :class:`SeriesEncoder` therefore splits a
series' template dataset into the runs of elements between the per-slice
("volatile") elements, encodes each run with pydicom once, and per slice
encodes only the volatile elements and the pixel data (Explicit VR Little
Endian).  The result is byte-identical to
``template.save_as(..., enforce_file_format=True)`` with the same values set
(:meth:`SeriesEncoder.encode_reference`, checked by the tests).

:func:`write_zip` writes members in the given order with fixed timestamps and
attributes, so the same members give the same zip bytes on every platform.

Example
-------
>>> import io, pydicom
>>> from pydicom.dataset import Dataset
>>> from iac_spark.testing.header import file_meta
>>> ds = Dataset()
>>> ds.file_meta = file_meta(pydicom.uid.SecondaryCaptureImageStorage, "DEMO")
>>> ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
>>> ds.SOPInstanceUID, ds.PatientName, ds.InstanceNumber = "", "Doe^Jane", "0"
>>> enc = SeriesEncoder(ds, volatile=("SOPInstanceUID", "InstanceNumber"),
...                     meta_placeholder_uid="1.2.3.4")
>>> raw = enc.encode({"SOPInstanceUID": "1.2.3.5", "InstanceNumber": "7"})
>>> back = pydicom.dcmread(io.BytesIO(raw))
>>> back.file_meta.MediaStorageSOPInstanceUID, int(back.InstanceNumber), str(back.PatientName)
('1.2.3.5', 7, 'Doe^Jane')
>>> raw == enc.encode_reference({"SOPInstanceUID": "1.2.3.5", "InstanceNumber": "7"})
True
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID

__all__ = ["ZIP_DATE_TIME", "SeriesEncoder", "SliceValues", "explicit_le", "write_zip"]

ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)  # every member's timestamp

SliceValues = Mapping[str, str | list[str]]  # volatile keyword -> DICOM string value(s)

_PREAMBLE = b"\x00" * 128 + b"DICM"
_SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH",
     "SL", "SS", "ST", "TM", "UI", "UL", "US"}
)  # fmt: skip


def explicit_le(tag: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (value padded to even length).

    >>> explicit_le(0x00200013, "IS", b"7").hex(" ")
    '20 00 13 00 49 53 02 00 37 20'
    """
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "OW") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _SHORT_VRS:
        return head + struct.pack("<H", len(value)) + value
    return head + b"\x00\x00" + struct.pack("<I", len(value)) + value


def _encode_elements(part: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, part)
    return fp.getvalue()


def _encode_file_meta(meta: FileMetaDataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


class SeriesEncoder:
    """Part-10 bytes of the slices of one series, from one template dataset.

    ``template`` (with ``file_meta``) holds every element of the slices, the
    ``volatile`` keywords with placeholder values.  Each :meth:`encode` call
    gives the values of every volatile keyword (string values, lists for
    multi-valued elements); ``SOPInstanceUID`` must be one of them and also
    becomes ``MediaStorageSOPInstanceUID``.  If the template has a
    ``PixelData`` element, it is volatile too and comes from ``pixel_data``
    (encoded as OW).  The file meta group is encoded once, with
    ``meta_placeholder_uid`` (best of the same length as the real SOP Instance
    UIDs, which are then patched in; other lengths re-encode the group).
    The encoder keeps ``template`` and sets its meta placeholder.
    """

    def __init__(
        self, template: Dataset, *, volatile: Sequence[str], meta_placeholder_uid: str
    ) -> None:
        self.template = template
        keywords = [*volatile, "PixelData"]
        volatile_tags = {int(Tag(kw)) for kw in keywords}
        self._vr = {kw: dictionary_VR(kw) for kw in keywords}
        self._segments: list[bytes | str] = []  # encoded static runs and volatile keywords
        run = Dataset()
        for elem in template:
            if int(elem.tag) in volatile_tags:
                if len(run):
                    self._segments.append(_encode_elements(run))
                    run = Dataset()
                self._segments.append(str(elem.keyword))
            else:
                run.add(elem)
        if len(run):
            self._segments.append(_encode_elements(run))
        self._meta_uid = meta_placeholder_uid
        template.file_meta.MediaStorageSOPInstanceUID = UID(meta_placeholder_uid)
        self._meta = _encode_file_meta(template.file_meta)

    def _meta_bytes(self, sop_uid: str) -> bytes:
        if len(sop_uid) == len(self._meta_uid):
            return self._meta.replace(self._meta_uid.encode("ascii"), sop_uid.encode("ascii"), 1)
        meta = FileMetaDataset(self.template.file_meta)  # other length: re-encode (slow path)
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        return _encode_file_meta(meta)

    def encode(self, values: SliceValues, pixel_data: bytes = b"") -> bytes:
        """Full Part-10 bytes of one slice (preamble, file meta, dataset)."""
        parts = [_PREAMBLE, self._meta_bytes(str(values["SOPInstanceUID"]))]
        for seg in self._segments:
            if isinstance(seg, bytes):
                parts.append(seg)
            elif seg == "PixelData":
                parts.append(explicit_le(0x7FE00010, "OW", pixel_data))
            else:
                value = values[seg]
                text = value if isinstance(value, str) else "\\".join(value)
                parts.append(explicit_le(int(Tag(seg)), self._vr[seg], text.encode("ascii")))
        return b"".join(parts)

    def encode_reference(self, values: SliceValues, pixel_data: bytes = b"") -> bytes:
        """Same as :meth:`encode` through pydicom's writer (slow; for tests).

        Sets ``values`` on the template (which keeps them).
        """
        ds = self.template
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(str(values["SOPInstanceUID"]))
        if "PixelData" in ds:
            ds.PixelData = pixel_data
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()


def _zipinfo(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = compression
    info.create_system = 3  # unix, whatever the host: keeps bytes identical across platforms
    info.external_attr = 0o100644 << 16
    return info


def write_zip(
    path: Path,
    members: Iterable[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    compresslevel: int | None = None,
) -> dict[str, int]:
    """Write ``(name, data)`` members, in order, to the zip ``path``; return name -> size.

    ``members`` is consumed lazily (one member in memory at a time).  The zip
    is written to ``<path>.tmp`` and renamed over ``path`` once complete; on
    any error the temporary file is removed and the error propagates.
    ``compresslevel`` None is zlib's default (6).

    >>> import tempfile, zipfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "a.zip"
    >>> write_zip(p, [("x.txt", b"hello"), ("y.bin", b"")])
    {'x.txt': 5, 'y.bin': 0}
    >>> zipfile.ZipFile(p).getinfo("x.txt").date_time
    (2020, 1, 1, 0, 0, 0)
    """
    sizes: dict[str, int] = {}
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=compression, compresslevel=compresslevel) as zf:
            for name, data in members:
                zf.writestr(_zipinfo(name, compression), data, compresslevel=compresslevel)
                sizes[name] = len(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return sizes
