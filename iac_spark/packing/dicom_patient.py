"""The ``dicom_patient`` layout, executor side: one patient's pack, built by the adapter's builder.

The layout belongs to ``iatro.iac.adapters.dicom`` (checked against iatro-iac-adapters 0.1.4,
see :data:`ADAPTER_VERSIONS_CHECKED`): one pack per patient, each instance's pixels as one
lossless JPEG XL record, the rest of each DICOM file as a zstd JSON template per series plus a
zstd JSON delta per instance. Packs are written by the adapter's own
``build_dicom_patient_package_from_files`` and open unchanged in ``DicomPatientReader``.

That builder fails the *whole patient* on the first instance it cannot hold. So
:func:`build_patient_pack` sorts those out first and returns them as :class:`Rejection` rows
(reasons render as ``"ErrorClass: /a.zip!x.dcm: ..."``), then builds the rest:

* pixel data pydicom cannot decode with the installed plugins →
  :class:`UnsupportedPixelDataError`;
* pixels lossless JPEG XL in the layout's schema v1 cannot store (float pixels, anything but
  8/16-bit integers, colour other than MONOCHROME1/2 or RGB, several frames, 16-bit big endian)
  → :class:`UnsupportedPixelTypeError`;
* a second copy of a SOP Instance UID with other bytes → :class:`ConflictingDuplicateError`
  (identical copies are dropped and listed in :attr:`PatientPackResult.duplicates`);
* anything else the builder refuses (missing UIDs, another patient's PatientID, a header the
  builder cannot read) → :class:`UnsupportedInstanceError`.

Members that cannot be read, or whose bytes no longer match the scan, are rejected with the
:class:`~iac_spark.errors.MemberError` the read raised. Infrastructure errors (``OSError``,
``MemoryError``) propagate: retrying the task may help, an error row would not.

A member that starts with its File Meta group but lacks the 128-byte preamble and ``DICM`` is
handed to the builder with both in front of its unchanged bytes (the builder reads without
``force``). Old-style files without any File Meta have no Transfer Syntax UID, so pydicom's
``pixel_array`` cannot decode them: they are rejected, not guessed.

Example:
    >>> import os, tempfile, zlib
    >>> from pydicom.data import get_testdata_file
    >>> raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> sop = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    >>> m = PatientMember("/data/ct.zip", "CT_small.dcm", raw, sop, len(raw), zlib.crc32(raw))
    >>> out = os.path.join(tempfile.mkdtemp(), "PAT-1.iac")
    >>> res = build_patient_pack(out, [m], jxl_effort=2)
    >>> [(i.row, i.modality, i.pixel_dtype, i.length > 0) for i in res.instances]
    [(0, 'CT', 'int16', True)]
    >>> res.header["payload_type"], res.rejected, verify_patient_pack(out)
    ('dicom_patient', [], [])
    >>> other = raw[:-1] + bytes([raw[-1] ^ 1])  # same SOP Instance UID, one pixel differs
    >>> copy = PatientMember("/data/ct.zip", "copy.dcm", other, sop, len(raw), zlib.crc32(other))
    >>> res = build_patient_pack(out + ".2", [m, copy], jxl_effort=2)
    >>> len(res.instances), res.rejected[0].reason[:72]
    (1, 'ConflictingDuplicateError: /data/ct.zip!copy.dcm: SOP Instance UID 1.3.6')
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unicodedata
import uuid
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pydicom
from iatro.iac import Codec, PackReader
from iatro.iac.adapters.dicom import DicomPatientReader, build_dicom_patient_package_from_files
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    JPEGLossless,
    JPEGLosslessSV1,
)

from ..errors import CorruptZipError, MemberError, OptionError, error_text, location

__all__ = [
    "ADAPTER_VERSIONS_CHECKED",
    "DEFAULT_JXL_EFFORT",
    "PAYLOAD_TYPE",
    "ConflictingDuplicateError",
    "Duplicate",
    "PackedInstance",
    "PatientMember",
    "PatientPackResult",
    "Rejection",
    "UnsupportedInstanceError",
    "UnsupportedPixelDataError",
    "UnsupportedPixelTypeError",
    "build_patient_pack",
    "verify_patient_pack",
]

PAYLOAD_TYPE: Final = "dicom_patient"

#: ``iatro-iac-adapters`` versions whose builder/reader this module was checked against.
ADAPTER_VERSIONS_CHECKED: Final = ("0.1.4",)

#: JPEG XL effort used when the caller has no preference, chosen by ``bench/layouts_probe.py``
#: (per core): on 8 real lossless CT/MR images effort 2 stores the pixels 1.57x smaller than
#: zstd-3 (effort 1: 1.46x, 3: 1.67x, 5: 1.74x) with the encoder at ~62 MB/s (1: ~500, 3: ~35,
#: 5: ~10); on the generated corpus its packs are 0.74x the zips (1: 0.80x, 3: 0.73x) and the
#: whole build runs at ~38-40 MB/s (1: ~55-73, 3: ~27). Effort 3 buys ~6 % on real pixels for
#: ~30 % of the build speed; effort 1 misses 0.75x the zips.
DEFAULT_JXL_EFFORT: Final = 2

#: The schema version of the layout this module expects the adapter to write.
_SCHEMA_VERSION: Final = 1
#: The builder decodes these itself (its own JPEG codec), not through pydicom.
_OWN_DECODER: Final = frozenset({JPEGLossless, JPEGLosslessSV1})
_COLOURS: Final = {1: ("MONOCHROME1", "MONOCHROME2"), 3: ("RGB",)}
_INT_FIELDS: Final = (
    ("Rows", 0),
    ("Columns", 0),
    ("SamplesPerPixel", 1),
    ("BitsAllocated", 0),
    ("BitsStored", 0),
    ("HighBit", 0),
    ("PixelRepresentation", 0),
)
_STORABLE_DTYPES: Final = frozenset(np.dtype(t) for t in ("u1", "u2", "i1", "i2"))
_PROBE_EFFORT: Final = 1
_MIB: Final = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class UnsupportedPixelDataError(MemberError):
    """The instance's pixel data cannot be decoded here, so no ``dicom_patient`` pack holds it.

    Reported as a rejection by :func:`build_patient_pack` (never raised out of it) when pydicom
    has no decoder plugin installed for the transfer syntax (the message names the plugins that
    would decode it; the adapter's own JPEG Lossless decoder does not count, because packed
    pixels must equal pydicom's ``pixel_array``), when decoding fails (pixel data shorter than
    the header says, a corrupt codestream), or when the pixels read back from the pack differ
    from pydicom's. Install the named plugin and rebuild, or keep the instance byte-exact in a
    ``dicom_p10`` pack.
    """


class UnsupportedPixelTypeError(MemberError):
    """The pixels decode, but lossless JPEG XL in the layout's schema v1 cannot store them.

    Reported by :func:`build_patient_pack` for Float / Double Float Pixel Data, bits allocated
    other than 8 or 16 (1-bit segmentations, 32-bit doses), photometric interpretations other
    than MONOCHROME1 / MONOCHROME2 (1 sample) and RGB (3 samples) -- YBR, palette colour --,
    more than one frame, and 16-bit big-endian pixel data. Such instances stay readable in a
    ``dicom_p10`` pack.
    """


class ConflictingDuplicateError(MemberError):
    """Another member of the patient has the same SOP Instance UID but different bytes.

    A ``dicom_patient`` pack holds one instance per SOP Instance UID. Of the copies that could
    be packed, the one first in (source path, member) order is kept; every other copy with
    other bytes is reported with this error naming the kept one. Identical copies are
    duplicates, not errors. Find out which copy is right; the others can go to ``dicom_p10``.
    """


class UnsupportedInstanceError(MemberError):
    """The layout's builder refuses the instance for a reason other than its pixels.

    Reported by :func:`build_patient_pack` when Study, Series or SOP Instance UID is missing
    or empty, the SOP Instance UID differs from the scanned one, the PatientID is not the
    pack's patient, the header cannot be read the way the builder reads it, or the builder
    raises for the instance (the message quotes it). If the builder fails for instances that
    each build alone, all of them are reported with this error and the builder's message.
    """


# --------------------------------------------------------------------------------------------
# Rows in and out
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientMember:
    """One scanned instance of the patient: where it is, what the scan saw, and its bytes.

    ``content`` is the member's bytes, or a zero-argument loader returning them (called when
    needed, possibly twice; a loader keeps memory bounded). :meth:`read` checks the bytes
    against the scanned ``size`` and ``crc32``.

    >>> m = PatientMember("/d/a.zip", "x.dcm", lambda: b"abc", "1.2.3", 3, 891568578)
    >>> m.where, m.read()
    ('/d/a.zip!x.dcm', b'abc')
    """

    source_path: str
    source_member: str | None
    content: bytes | Callable[[], bytes] = field(repr=False, compare=False)
    sop_instance_uid: str | None
    size: int
    crc32: int

    @property
    def where(self) -> str:
        """``path!member`` as every message names it."""
        return location(self.source_path, self.source_member)

    def read(self) -> bytes:
        """The member's bytes; a :class:`~iac_spark.errors.MemberError` if unreadable or changed."""
        data = self.content() if callable(self.content) else self.content
        data = bytes(data)
        crc = zlib.crc32(data)
        if len(data) != self.size or crc != self.crc32:
            raise CorruptZipError(
                f"{self.where}: bytes changed since the scan (size {len(data)} vs {self.size}, "
                f"crc32 {crc} vs {self.crc32})"
            )
        return data


@dataclass(frozen=True)
class Rejection:
    """A member the layout cannot hold; ``reason`` is ``"ErrorClass: path!member: ..."``."""

    member: PatientMember
    reason: str

    @property
    def error_class(self) -> str:
        """The class name at the start of ``reason`` (e.g. ``UnsupportedPixelTypeError``)."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class Duplicate:
    """A member with the same SOP Instance UID, size and CRC-32 as the ``kept`` one: not packed."""

    member: PatientMember
    kept: PatientMember


@dataclass(frozen=True)
class PackedInstance:
    """One packed instance, as the catalog needs it (values read back from the pack's tables).

    ``offset`` / ``length`` / ``crc32`` locate the instance's JPEG XL record in the pack's data
    segment (``length`` 0 for an instance without pixel data); ``raw_length`` / ``raw_crc32``
    are the source member's.
    """

    member: PatientMember
    row: int
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    instance_number: int | None
    has_pixel_data: bool
    offset: int
    length: int
    crc32: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    pixel_dtype: str | None
    source_transfer_syntax: str

    @property
    def raw_length(self) -> int:
        return self.member.size

    @property
    def raw_crc32(self) -> int:
        return self.member.crc32


@dataclass(frozen=True)
class PatientPackResult:
    """What :func:`build_patient_pack` did with one patient's members.

    Every member is in exactly one of ``instances``, ``duplicates`` and ``rejected``.
    ``path`` is None (and ``header`` empty) when nothing could be packed.
    """

    path: str | None
    patient_id: str | None
    instances: list[PackedInstance]
    rejected: list[Rejection]
    duplicates: list[Duplicate]
    header: dict[str, Any]
    num_series: int
    data_bytes: int
    file_bytes: int


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Candidate:
    """A member that passed the header checks; the builder still has to accept it."""

    member: PatientMember
    sop: str
    patient_raw: str
    patient_key: str
    instance_number: int | None
    prefix: bytes  # preamble + "DICM" for a File Meta group without them, usually b""
    decoded_by_adapter: bool  # the builder decodes it itself: compare with pydicom afterwards
    data: bytes | None = field(default=None, repr=False)  # kept when within the memory budget

    @property
    def where(self) -> str:
        return self.member.where

    @property
    def content_key(self) -> tuple[str, int, int]:
        return (self.sop, self.member.size, self.member.crc32)

    def raw(self) -> bytes:
        return self.data if self.data is not None else self.member.read()

    def part10(self) -> bytes:
        raw = self.raw()
        return self.prefix + raw if self.prefix else raw


class _Source(io.BytesIO):
    """One instance's bytes for the builder; ``name`` is how the builder's messages label it."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def _sources(cands: list[_Candidate], unreadable: dict[int, MemberError]) -> Iterator[_Source]:
    """The builder's input, loaded lazily on the calling thread (never in the builder's pool,
    so loaders need not be thread-safe; the builder keeps only ``2 * workers`` ahead)."""
    for c in cands:
        try:
            data = c.part10()
        except MemberError as exc:
            unreadable[id(c)] = exc
            raise
        yield _Source(data, c.where)


def _ts_label(ts: UID) -> str:
    return f"{ts.name} ({ts})" if ts.is_transfer_syntax else str(ts)


def _int_value(ds: Dataset, keyword: str, default: int, where: str) -> int:
    try:
        return int(ds.get(keyword, default))
    except (TypeError, ValueError) as exc:
        raise UnsupportedInstanceError(
            f"{where}: {keyword} {ds.get(keyword)!r} is not an integer"
        ) from exc


def _optional_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _decoder_problem(ts: UID) -> str | None:
    """Why pydicom cannot decode ``ts`` here (None: a plugin is installed)."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"pydicom has no pixel data decoder for {_ts_label(ts)}"
    if decoder.is_available:
        return None
    missing = "; ".join(decoder.missing_dependencies) or "no plugin known"
    return f"no pydicom decoder plugin for {_ts_label(ts)} is installed (would decode: {missing})"


def _pixel_type_problems(ds: Dataset, ts: UID, where: str) -> list[str]:
    frames = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(frames if frames not in (None, "") else 1)
    except (TypeError, ValueError) as exc:
        raise UnsupportedInstanceError(
            f"{where}: NumberOfFrames {frames!r} is not an integer"
        ) from exc
    spp = _int_value(ds, "SamplesPerPixel", 1, where)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    bits = _int_value(ds, "BitsAllocated", 0, where)
    problems = []
    if n_frames != 1:
        problems.append(f"{n_frames} frames (the layout stores one frame per instance)")
    if photometric not in _COLOURS.get(spp, ()):
        problems.append(
            f"PhotometricInterpretation {photometric or 'missing'} with {spp} sample(s) per "
            "pixel (the layout stores MONOCHROME1/MONOCHROME2 or RGB)"
        )
    if bits not in (8, 16):
        problems.append(f"BitsAllocated {bits} (the layout stores 8- or 16-bit integers)")
    elif bits == 16 and not ts.is_little_endian:
        problems.append("16-bit big-endian pixel data (the builder stores little-endian arrays)")
    return problems


def _classify(member: PatientMember) -> _Candidate:
    """Header checks for one member; raises the :class:`MemberError` that rejects it."""
    where = member.where
    raw = member.read()
    part10 = raw[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=not part10)
        ts_value = ds.file_meta.get("TransferSyntaxUID")
        patient_raw = str(ds.get("PatientID", ""))
    except MemberError:
        raise
    except Exception as exc:
        raise UnsupportedInstanceError(
            f"{where}: the builder cannot read the header: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [
        k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not ds.get(k)
    ]
    if missing:
        raise UnsupportedInstanceError(
            f"{where}: no {' / '.join(missing)} (the layout groups instances by study and "
            "series and indexes them by SOP Instance UID)"
        )
    sop = str(ds.SOPInstanceUID)
    if member.sop_instance_uid is not None and sop != member.sop_instance_uid:
        raise UnsupportedInstanceError(
            f"{where}: SOP Instance UID {sop} differs from the scanned {member.sop_instance_uid}"
        )
    if ts_value is None:  # old-style files without File Meta, too
        if "PixelData" in ds:
            raise UnsupportedPixelDataError(
                f"{where}: no Transfer Syntax UID (0002,0010) in the File Meta, so pydicom's "
                "pixel_array cannot decode the pixel data"
            )
        raise UnsupportedInstanceError(
            f"{where}: no Transfer Syntax UID (0002,0010) in the File Meta, which the builder needs"
        )
    ts = UID(str(ts_value))
    for keyword, default in _INT_FIELDS:
        _int_value(ds, keyword, default, where)
    if "PixelData" not in ds:
        floats = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if floats:
            raise UnsupportedPixelTypeError(
                f"{where}: {floats[0]} (floating-point pixels; the layout stores 8- or "
                "16-bit integer pixels as lossless JPEG XL)"
            )
    else:
        absent = [k for k in ("Rows", "Columns", "BitsAllocated") if not ds.get(k)]
        if absent:
            raise UnsupportedPixelDataError(
                f"{where}: pixel data without {' / '.join(absent)}, so it cannot be decoded"
            )
        if not ts.is_transfer_syntax:
            raise UnsupportedPixelDataError(f"{where}: unknown transfer syntax {ts}")
        problems = _pixel_type_problems(ds, ts, where)
        if problems:
            raise UnsupportedPixelTypeError(f"{where}: {'; '.join(problems)}")
        problem = _decoder_problem(ts) if ts.is_compressed else None
        if problem:
            raise UnsupportedPixelDataError(f"{where}: {problem}")
        if not ts.is_compressed:
            expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
            expected *= int(ds.BitsAllocated) // 8
            have = len(ds.PixelData or b"")
            if have < expected:
                raise UnsupportedPixelDataError(
                    f"{where}: the pixel data has {have} bytes, the header needs {expected}"
                )
    # a File Meta group without the 128-byte preamble and "DICM": the builder reads without
    # force, so it gets both in front of the unchanged bytes
    prefix = b"" if part10 else bytes(128) + b"DICM"
    return _Candidate(
        member=member,
        sop=sop,
        patient_raw=patient_raw,
        patient_key=unicodedata.normalize("NFKC", patient_raw).strip().casefold(),
        instance_number=_optional_int(ds, "InstanceNumber"),
        prefix=prefix,
        decoded_by_adapter="PixelData" in ds and ts in _OWN_DECODER,
        data=raw,
    )


def _probe(cand: _Candidate) -> MemberError | None:
    """Decode one candidate with pydicom as the builder would; the error that rejects it, if any."""
    where = cand.where
    try:
        ds = pydicom.dcmread(io.BytesIO(cand.part10()))
    except MemberError as exc:
        return exc
    except Exception as exc:
        return UnsupportedInstanceError(
            f"{where}: the builder cannot read the instance: {type(exc).__name__}: {exc}"
        )
    if "PixelData" not in ds:
        return None
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        return UnsupportedPixelDataError(
            f"{where}: pydicom cannot decode the {_ts_label(ts)} pixel data: "
            f"{type(exc).__name__}: {exc}"
        )
    want: tuple[int, ...] = (int(ds.Rows), int(ds.Columns))
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        want += (int(ds.SamplesPerPixel),)
    if pixels.dtype not in _STORABLE_DTYPES:
        return UnsupportedPixelTypeError(
            f"{where}: pydicom decodes {pixels.dtype.str} pixels (the layout stores native "
            "8- or 16-bit integers)"
        )
    if pixels.shape != want:
        return UnsupportedPixelDataError(
            f"{where}: pydicom decodes shape {pixels.shape}, the header says {want}"
        )
    return None


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def _location_key(member: PatientMember) -> tuple[str, str]:
    return (member.source_path, member.source_member or "")


def _select(
    cands: list[_Candidate],
) -> tuple[list[_Candidate], list[Duplicate], list[tuple[PatientMember, MemberError]]]:
    """One patient, one instance per SOP Instance UID: (to build, duplicates, rejections)."""
    rejected: list[tuple[PatientMember, MemberError]] = []
    keys = Counter(c.patient_key for c in cands if c.patient_key)
    if len(keys) > 1:  # the most frequent PatientID (first seen on a tie) is the pack's patient
        top = max(keys.values())
        patient = next(c for c in cands if c.patient_key and keys[c.patient_key] == top)
        same = []
        for c in cands:
            if c.patient_key and c.patient_key != patient.patient_key:
                rejected.append((c.member, UnsupportedInstanceError(
                    f"{c.where}: PatientID {c.patient_raw!r} is not this pack's patient "
                    f"{patient.patient_raw!r} (one patient per dicom_patient pack)"
                )))  # fmt: skip
            else:
                same.append(c)
        cands = same
    build: list[_Candidate] = []
    duplicates: list[Duplicate] = []
    by_sop: dict[str, _Candidate] = {}
    for c in cands:
        kept = by_sop.get(c.sop)
        if kept is None:
            by_sop[c.sop] = c
            build.append(c)
        elif c.content_key == kept.content_key:
            duplicates.append(Duplicate(c.member, kept.member))
        else:
            rejected.append((c.member, ConflictingDuplicateError(
                f"{c.where}: SOP Instance UID {c.sop} is packed from {kept.where} with other "
                f"bytes (size {c.member.size} vs {kept.member.size}, crc32 {c.member.crc32} "
                f"vs {kept.member.crc32}); a dicom_patient pack holds one copy"
            )))  # fmt: skip
    return build, duplicates, rejected


def _run_builder(
    path: str, cands: list[_Candidate], *, effort: int, workers: int
) -> tuple[Exception | None, dict[int, MemberError]]:
    """Build ``path`` from ``cands``: (the builder's data error or None, unreadable members)."""
    unreadable: dict[int, MemberError] = {}
    try:
        build_dicom_patient_package_from_files(
            _sources(cands, unreadable), path, effort=effort, workers=workers, overwrite=False
        )
    except (OSError, MemoryError):
        _unlink(path)
        raise
    except Exception as exc:
        _unlink(path)
        return exc, unreadable
    return None, unreadable


def _culprits(
    cands: list[_Candidate], failure: Exception, unreadable: dict[int, MemberError], scratch: str
) -> dict[int, MemberError]:
    """Which candidates made the build fail, by ``id``; every one of them if none alone does."""
    if unreadable:
        return unreadable
    found: dict[int, MemberError] = {}
    for c in cands:
        problem = _probe(c)
        if problem is not None:
            found[id(c)] = problem
    if found:
        return found
    for c in cands:  # each alone through the builder itself
        probe_path = os.path.join(scratch, f"probe-{uuid.uuid4().hex}.iac")
        error, gone = _run_builder(probe_path, [c], effort=_PROBE_EFFORT, workers=1)
        _unlink(probe_path)
        if gone:
            found.update(gone)
        elif error is not None:
            found[id(c)] = UnsupportedInstanceError(
                f"{c.where}: the dicom_patient builder rejects it: {type(error).__name__}: {error}"
            )
    if found:
        return found
    return {
        id(c): UnsupportedInstanceError(
            f"{c.where}: the dicom_patient builder fails for this patient's {len(cands)} "
            f"instances together, though each builds alone: {type(failure).__name__}: {failure}"
        )
        for c in cands
    }


def _pixel_mismatches(
    path: str, cands: list[_Candidate], check_all: bool
) -> dict[int, MemberError]:
    """Rows whose ``read_pixel_array`` differs from pydicom's ``pixel_array`` of the source."""
    check = [c for c in cands if check_all or c.decoded_by_adapter]
    if not check:
        return {}
    found: dict[int, MemberError] = {}
    reader = DicomPatientReader(path)
    try:
        rows = {
            sop: i
            for i, sop in enumerate(reader.instance_table.column("sop_instance_uid").to_pylist())
        }
        has_pixels = reader.instance_table.column("has_pixel_data").to_pylist()
        for c in check:
            row = rows[c.sop]
            try:
                ds = pydicom.dcmread(io.BytesIO(c.raw()), force=True)
                if "PixelData" not in ds:
                    if has_pixels[row]:
                        found[id(c)] = UnsupportedInstanceError(
                            f"{c.where}: packed with pixels it has not"
                        )
                    continue
                want = ds.pixel_array
            except MemberError as exc:
                found[id(c)] = exc
                continue
            except Exception as exc:
                found[id(c)] = UnsupportedPixelDataError(
                    f"{c.where}: pydicom cannot decode the pixel data: {type(exc).__name__}: {exc}"
                )
                continue
            have = reader.read_pixel_array(row, verify=True)
            if (
                have.dtype != want.dtype
                or have.shape != want.shape
                or not np.array_equal(have, want)
            ):
                found[id(c)] = UnsupportedPixelDataError(
                    f"{c.where}: the pack gives {have.dtype}{have.shape} pixels that differ from "
                    f"pydicom's {want.dtype}{want.shape} pixel_array"
                )
    finally:
        reader.close()
    return found


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_back(
    path: str, cands: list[_Candidate]
) -> tuple[list[PackedInstance], dict[str, Any], int, int]:
    by_sop = {c.sop: c for c in cands}
    reader = DicomPatientReader(path)
    try:
        header = dict(reader.header)
        series = reader.series_table.to_pylist()
        table = reader.instance_table.drop_columns(["dicom_delta"]).to_pylist()
    finally:
        reader.close()
    series_by_idx = {s["series_idx"]: s for s in series}
    instances = []
    for row, r in enumerate(table):
        s = series_by_idx[r["series_idx"]]
        cand = by_sop[r["sop_instance_uid"]]
        instances.append(PackedInstance(
            member=cand.member, row=row, sop_instance_uid=r["sop_instance_uid"],
            series_instance_uid=s["series_uid"], study_instance_uid=s["study_uid"],
            modality=s["modality"], instance_number=cand.instance_number,
            has_pixel_data=bool(r["has_pixel_data"]), offset=int(r["offset"]),
            length=int(r["length"]), crc32=int(r["crc32"]), rows=int(r["rows"]),
            columns=int(r["columns"]), samples_per_pixel=int(r["samples_per_pixel"]),
            bits_allocated=int(r["bits_allocated"]), bits_stored=int(r["bits_stored"]),
            pixel_representation=int(r["pixel_representation"]),
            photometric_interpretation=r["photometric_interpretation"],
            pixel_dtype=r["pixel_dtype"] or None,
            source_transfer_syntax=r["source_transfer_syntax"],
        ))  # fmt: skip
    return instances, header, len(series), int(header["data_length"])


def _reason_for(cand: _Candidate, where: str, exc: MemberError) -> str:
    """``exc`` rendered for ``cand``, which may be an identical copy of the member at ``where``."""
    text = str(exc)
    if cand.where != where and text.startswith(f"{where}: "):
        text = f"{cand.where}: {text[len(where) + 2 :]} (identical copy of {where})"
    return f"{type(exc).__name__}: {text}"


def build_patient_pack(
    target_path: str,
    members: Sequence[PatientMember],
    *,
    jxl_effort: int = DEFAULT_JXL_EFFORT,
    workers: int = 1,
    check_pixels: bool = False,
    max_buffered_bytes: int = 256 * _MIB,
) -> PatientPackResult:
    """Build one patient's ``dicom_patient`` pack at ``target_path`` from ``members``.

    Members the layout cannot hold are returned in ``rejected`` (see the module docstring)
    and the pack is built from the rest; when nothing is left, no file is written and
    ``path`` is None. The pack appears at ``target_path`` only when complete (it is written
    beside it under a temporary name and renamed); ``target_path`` must not exist yet --
    give every task attempt its own path.

    ``jxl_effort`` (1-10) is libjxl's effort: higher is smaller and slower. ``workers`` is
    the builder's thread count (decode + encode of several instances at once); keep it 1 when
    the executor already runs one task per core. ``check_pixels`` reads every packed pixel
    array back and compares it with pydicom's ``pixel_array`` of the source (always done for
    JPEG Lossless sources, which the builder decodes with its own codec); mismatches become
    rejections. Members given as loaders are read once for the header checks and kept for
    the build while the patient's bytes stay within ``max_buffered_bytes``; beyond that they
    are read again, so memory stays bounded by the builder's few instances in flight.
    """
    if isinstance(jxl_effort, bool) or not isinstance(jxl_effort, int) or not 1 <= jxl_effort <= 10:
        raise OptionError(f"jxl_effort must be an integer from 1 to 10, got {jxl_effort!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers must be a positive integer, got {workers!r}")
    if os.path.lexists(target_path):
        raise FileExistsError(f"{target_path}: exists; every task attempt writes its own pack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's lenient-parse warnings; problems are rows
        return _build(target_path, members, jxl_effort, workers, check_pixels, max_buffered_bytes)


def _build(
    target_path: str,
    members: Sequence[PatientMember],
    effort: int,
    workers: int,
    check_pixels: bool,
    max_buffered: int,
) -> PatientPackResult:
    ordered = sorted(members, key=_location_key)
    rejected: dict[int, Rejection] = {}
    holdable: list[_Candidate] = []
    buffered = 0
    for m in ordered:
        try:
            cand = _classify(m)
        except MemberError as exc:
            rejected[id(m)] = Rejection(m, error_text(exc))
            continue
        if callable(m.content):  # keep loaded bytes within the budget; bytes given stay anyway
            if buffered + m.size <= max_buffered:
                buffered += m.size
            else:
                cand.data = None
        holdable.append(cand)
    directory = os.path.dirname(os.path.abspath(target_path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(target_path)}.{uuid.uuid4().hex}.tmp")
    # by content, so that identical copies fail alike: (where it failed, why)
    failed: dict[tuple[str, int, int], tuple[str, MemberError]] = {}
    while True:
        alive = [c for c in holdable if c.content_key not in failed]
        build, duplicates, refused = _select(alive)
        if not build:
            break
        error, unreadable = _run_builder(temp, build, effort=effort, workers=workers)
        if error is None:
            bad = _pixel_mismatches(temp, build, check_pixels)
            if not bad:
                break
            _unlink(temp)
        else:
            with tempfile.TemporaryDirectory(dir=directory, prefix=".probe-") as scratch:
                bad = _culprits(build, error, unreadable, scratch)
        for c in build:
            if id(c) in bad:
                failed[c.content_key] = (c.where, bad[id(c)])
    for c in holdable:
        if c.content_key in failed:
            rejected[id(c.member)] = Rejection(c.member, _reason_for(c, *failed[c.content_key]))
    for m, why in refused:
        rejected[id(m)] = Rejection(m, error_text(why))
    rejections = [rejected[id(m)] for m in ordered if id(m) in rejected]
    if not build:
        return PatientPackResult(None, None, [], rejections, duplicates, {}, 0, 0, 0)
    try:
        instances, header, num_series, data_bytes = _read_back(temp, build)
        os.replace(temp, target_path)
    except BaseException:
        _unlink(temp)
        raise
    patient = next((c.patient_raw for c in build if c.patient_key), build[0].patient_raw)
    return PatientPackResult(
        path=target_path,
        patient_id=patient,
        instances=instances,
        rejected=rejections,
        duplicates=duplicates,
        header=header,
        num_series=num_series,
        data_bytes=data_bytes,
        file_bytes=os.path.getsize(target_path),
    )


# --------------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------------


def _check_header(header: dict[str, Any]) -> list[str]:
    params = header.get("codec_params") or {}
    problems = []
    if header.get("payload_type") != PAYLOAD_TYPE:
        problems.append(f"payload_type {header.get('payload_type')!r}, not {PAYLOAD_TYPE!r}")
    if header.get("dicom_schema_version") != _SCHEMA_VERSION:
        problems.append(f"dicom_schema_version {header.get('dicom_schema_version')!r}, not 1")
    if (
        header.get("codec") != Codec.JXL
        or params.get("lossless") is not True
        or params.get("usecontainer") is not True
    ):
        problems.append(f"codec {header.get('codec')!r} {params}, not lossless JPEG XL (container)")
    if header.get("checksum") != "crc32":
        problems.append(f"checksum {header.get('checksum')!r}, not 'crc32'")
    return problems


def _verify_tables(reader: PackReader, header: dict[str, Any]) -> Iterator[str]:
    series = reader.slide_table
    index = reader.index_table
    data_length = int(header.get("data_length", 0))
    meta_length = int(header.get("metadata_length", 0))
    zstd = Codec.create(Codec.ZSTD, level=3)
    counts = Counter(index.column("series_idx").to_pylist())
    known = set()
    for s in series.to_pylist():
        idx = s["series_idx"]
        known.add(idx)
        where = f"series {idx} ({s['series_uid']})"
        off, length = int(s["template_offset"]), int(s["template_length"])
        if off + length > meta_length:
            yield f"{where}: template [{off}, +{length}) outside the metadata ({meta_length} bytes)"
            continue
        data = reader.read_data_span(off, length)
        if zlib.crc32(data) != int(s["template_crc32"]):
            yield f"{where}: template CRC-32 {zlib.crc32(data)} != {s['template_crc32']}"
        else:
            try:
                json.loads(zstd.decode(data))
            except Exception as exc:
                yield f"{where}: template does not decode: {type(exc).__name__}: {exc}"
        if counts.get(idx, 0) != int(s["instance_count"]):
            yield f"{where}: instance_count {s['instance_count']} but {counts.get(idx, 0)} rows"
    sops = Counter(index.column("sop_instance_uid").to_pylist())
    for sop, n in sops.items():
        if n > 1:
            yield f"SOP Instance UID {sop} is in {n} rows"
    cols = ["series_idx", "sop_instance_uid", "dicom_delta", "dicom_delta_crc32"]
    cols += ["offset", "length", "crc32", "has_pixel_data"]
    for row, r in enumerate(index.select(cols).to_pylist()):
        where = f"row {row} ({r['sop_instance_uid']})"
        if r["series_idx"] not in known:
            yield f"{where}: series_idx {r['series_idx']} is not in the series table"
        delta = r["dicom_delta"] or b""
        if zlib.crc32(delta) != int(r["dicom_delta_crc32"]):
            yield f"{where}: delta CRC-32 {zlib.crc32(delta)} != {r['dicom_delta_crc32']}"
        off, length = int(r["offset"]), int(r["length"])
        if off < meta_length or off + length > data_length:
            yield f"{where}: pixels [{off}, +{length}) outside the pixel data"
            continue
        if r["has_pixel_data"] and length == 0:
            yield f"{where}: has_pixel_data but an empty pixel record"
        payload = reader.read_payload(row)
        if zlib.crc32(payload) != int(r["crc32"]):
            yield f"{where}: pixel CRC-32 {zlib.crc32(payload)} != {r['crc32']}"


def verify_patient_pack(path: str, *, decode: bool = False) -> list[str]:
    """Problems of a ``dicom_patient`` pack, each naming the pack; ``[]`` when it is sound.

    Checks the header (payload type, schema version, lossless JPEG XL, CRC-32 checksums), the
    series table (template CRC-32s, templates decode, instance counts), and every row (delta
    CRC-32, pixel record inside the data segment and its CRC-32, unique SOP Instance UIDs) --
    the checksums ``DicomPatientReader(..., verify=True)`` checks per read, for all rows at
    once. With ``decode=True`` every row is also decoded (``read_pixel_array`` and
    ``read_dicom`` parsed by pydicom with the row's SOP Instance UID).

    >>> verify_patient_pack("/nonexistent.iac")[0].startswith("/nonexistent.iac: cannot open")
    True
    """
    try:
        reader = PackReader(path)
        header = dict(reader.header)
        _ = reader.index_table
    except Exception as exc:
        return [f"{path}: cannot open: {type(exc).__name__}: {exc}"]
    try:
        problems = _check_header(header)
        if not problems:
            problems.extend(_verify_tables(reader, header))
    except Exception as exc:
        problems = [f"cannot check: {type(exc).__name__}: {exc}"]
    finally:
        reader.close()
    if decode and not problems:
        problems.extend(_verify_decode(path))
    return [f"{path}: {p}" for p in problems]


def _verify_decode(path: str) -> Iterator[str]:
    reader = DicomPatientReader(path)
    try:
        table = reader.instance_table
        sops = table.column("sop_instance_uid").to_pylist()
        has_pixels = table.column("has_pixel_data").to_pylist()
        for row, sop in enumerate(sops):
            try:
                if has_pixels[row]:
                    reader.read_pixel_array(row, verify=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(reader.read_dicom(row, verify=True)))
                if str(ds.SOPInstanceUID) != sop:
                    yield f"row {row}: read_dicom gives SOP Instance UID {ds.SOPInstanceUID}, not {sop}"
            except Exception as exc:
                yield f"row {row} ({sop}): does not decode: {type(exc).__name__}: {exc}"
    finally:
        reader.close()
