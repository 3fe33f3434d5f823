"""Deterministic synthetic DICOM corpus generator (no network, no downloads).

The pipeline ingests zipped DICOM archives such as the ones public archives
(e.g. TCIA) hand out.  This module writes look-alike archives for tests and
benchmarks: realistic scanner-style headers (~100 elements, sequences
included) and pixel data that compresses like real images (smooth
anatomy-like phantoms plus mild noise), never random bytes.

Corpus layout
-------------
Each patient ``PAT-0000``, ``PAT-0001``, ... gets up to **two studies**, one
per modality:

* study 1 - a CT chest study holding ``ct_series_per_patient`` axial series
  (512x512 by default, 16-bit stored, ``BitsStored`` 12, ``RescaleIntercept``
  -1024).  The series are reconstructions of the same body (same frame of
  reference) with different kernels / slice thicknesses / noise levels;
* study 2 - an MR brain study holding ``mr_series_per_patient`` axial series
  (256x256, T1 / T2 / FLAIR contrasts).

A modality with zero series or zero slices is left out (the remaining
study then becomes study 1).  With ``zip_layout="patient"`` the corpus has
one ``root/<patient_id>.zip`` per patient; with ``zip_layout="study"`` one
``root/<patient_id>_<study_n>.zip`` per study (``study_n`` 1-based).  Members
are named ``<patient_id>/<study_uid_short>/S<series:02d>_<series_desc>/<instance:04d>.dcm``
(``study_uid_short`` = last 8 digits of the StudyInstanceUID) and each zip
also holds a ``LICENSE.txt`` when ``license_member`` is true.  The DICOM
member bytes do not depend on the layout.

Determinism
-----------
Everything derives from ``CorpusSpec.seed``: UIDs come from
:func:`pydicom.uid.generate_uid` with ``entropy_srcs`` (pydicom root
``1.2.826.0.1.3680043.8.498.``), dates/times from seeded generators, pixels
from ``numpy.random.default_rng`` seeded by ``(seed, patient, modality,
series)``; zip entries get a fixed ``date_time``.  The same spec always gives
byte-identical zips, whatever the number of worker threads.

Example
-------
>>> import tempfile
>>> from iac_spark.testing.corpus import CorpusSpec, generate_corpus
>>> spec = CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32)
>>> s = generate_corpus(tempfile.mkdtemp(), spec)
>>> [p.name for p in s.zips], s.dicom_members, s.other_members
(['PAT-0000.zip', 'PAT-0001.zip'], 10, 2)

Command line::

    python -m iac_spark.testing.corpus OUT_DIR --patients 4 --ct-slices 20 \\
        --mr-slices 10 --seed 0 --layout patient
"""

from __future__ import annotations

import argparse
import io
import os
import re
import struct
import sys
import time
import zipfile
import zlib
from collections.abc import Sequence as SequenceABC
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

__all__ = ["CorpusSpec", "CorpusSummary", "generate_corpus", "make_ct_slice", "make_mr_slice"]

ZipLayout = Literal["patient", "study"]

# --------------------------------------------------------------------------------------
# Public dataclasses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSpec:
    """What :func:`generate_corpus` writes.

    >>> CorpusSpec(patients=2, ct_slices=5, ct_size=64).mr_slices
    10
    """

    patients: int = 4
    ct_series_per_patient: int = 1
    ct_slices: int = 20  # slices per CT series, ct_size^2 uint16, BitsStored 12
    mr_series_per_patient: int = 1
    mr_slices: int = 10  # slices per MR series, mr_size^2 uint16
    zip_layout: ZipLayout = "patient"  # one zip per patient, or one zip per study
    seed: int = 0
    compression: int = zipfile.ZIP_DEFLATED
    license_member: bool = True  # add a LICENSE.txt member to each zip (as TCIA does)
    ct_size: int = 512  # smaller images make fast unit tests
    mr_size: int = 256
    # extension: zip compresslevel (None = zipfile/zlib default, i.e. deflate level 6)
    compresslevel: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "patients",
            "ct_series_per_patient",
            "ct_slices",
            "mr_series_per_patient",
            "mr_slices",
            "seed",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"CorpusSpec.{name} must be an int >= 0, got {value!r}")
        for name in ("ct_size", "mr_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 8 <= value <= 4096:
                raise ValueError(f"CorpusSpec.{name} must be an int in [8, 4096], got {value!r}")
        if self.zip_layout not in ("patient", "study"):
            raise ValueError(
                f"CorpusSpec.zip_layout must be 'patient' or 'study', got {self.zip_layout!r}"
            )


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`generate_corpus` wrote."""

    root: Path
    zips: tuple[Path, ...]
    dicom_members: int  # number of DICOM members written over all zips
    other_members: int  # LICENSE.txt etc.
    total_dicom_bytes: int  # sum of uncompressed DICOM member sizes
    patients: tuple[str, ...]


# --------------------------------------------------------------------------------------
# Constants: vocabulary, protocols
# --------------------------------------------------------------------------------------

_UID_PREFIX = PYDICOM_ROOT_UID  # "1.2.826.0.1.3680043.8.498."
_UID_NS = "iac_spark.testing.corpus/v1"
_IMPLEMENTATION_UID = generate_uid(_UID_PREFIX, entropy_srcs=[_UID_NS, "implementation"])
_IMPLEMENTATION_VERSION = "IACSPARK_SYN_1"
_ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)
_NOISE_PAD = 96  # noise fields are (size + pad)^2 and sliced at per-slice offsets
_CT_ANATOMY_MM = 320.0  # cranio-caudal extent covered by the chest phantom
_MR_ANATOMY_MM = 150.0  # skull base to vertex

_FIRST_F = ("Jane", "Mary", "Anna", "Emma", "Olivia", "Sofia", "Laura", "Grace", "Chloe", "Maria")
_FIRST_M = (
    "John", "James", "Peter", "David", "Michael", "Thomas", "Lucas", "Daniel", "Samuel", "Oliver",
)  # fmt: skip
_LAST = (
    "Doe", "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Martin",
    "Wilson", "Moore", "Taylor", "Anderson", "Clark", "Lewis", "Walker", "Young",
)  # fmt: skip
_INSTITUTIONS = (
    ("Synthetic General Hospital", "1 Example Road^^Springfield^^00001^XX"),
    ("Example University Medical Center", "200 Placeholder Ave^^Riverton^^00002^XX"),
    ("Demo Regional Clinic", "7 Sample Street^^Lakeside^^00003^XX"),
)
_REFERRING = ("Careful^Alex^^Dr", "Example^Robin^^Dr", "Sample^Kim^^Dr", "")
_OPERATORS = ("TECH^A", "TECH^B", "TECH^C")

_LICENSE_TEXT = (
    "Synthetic DICOM corpus generated by iac_spark.testing.corpus (seed={seed}).\n"
    "All images and identifiers are computer generated; no real patient data is included.\n"
    "Released under CC0 1.0 Universal (public domain dedication).\n"
    "https://creativecommons.org/publicdomain/zero/1.0/\n"
)


@dataclass(frozen=True)
class _CTProtocol:
    description: str
    kernel: str
    thickness_mm: float
    noise_hu: float
    window_center: int
    window_width: int
    kvp: int
    ma: int


@dataclass(frozen=True)
class _MRProtocol:
    description: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    sequence_name: str
    tr_ms: float
    te_ms: float
    ti_ms: float | None
    flip_deg: float
    etl: int
    thickness_mm: float
    gap_mm: float
    noise: float
    # signal of scalp fat, skull, CSF, grey matter, white matter
    contrast: tuple[float, float, float, float, float]


_CT_PROTOCOLS = (
    _CTProtocol("AX CHEST 2.5mm STD", "STANDARD", 2.5, 5.0, 40, 400, 120, 220),
    _CTProtocol("AX CHEST 1.25mm LUNG", "LUNG", 1.25, 9.0, -600, 1500, 120, 220),
    _CTProtocol("AX CHEST 5mm SOFT", "SOFT", 5.0, 3.5, 50, 350, 120, 220),
)
_MR_PROTOCOLS = (
    _MRProtocol("AX T1 SE", ("SE",), ("SP",), "se2d1", 550.0, 12.0, None, 90.0, 1, 5.0, 1.0, 7.0,
                (950.0, 40.0, 220.0, 560.0, 760.0)),
    _MRProtocol("AX T2 TSE", ("SE",), ("SK", "SP"), "tse2d1_15", 4500.0, 95.0, None, 150.0, 15,
                5.0, 1.0, 9.0, (700.0, 35.0, 1500.0, 880.0, 620.0)),
    _MRProtocol("AX FLAIR", ("SE", "IR"), ("SK", "SP", "MP"), "tir2d1_21", 9000.0, 85.0, 2500.0,
                150.0, 21, 5.0, 1.0, 8.0, (520.0, 30.0, 90.0, 720.0, 560.0)),
)  # fmt: skip


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _uid(*parts: object) -> UID:
    return generate_uid(_UID_PREFIX, entropy_srcs=[_UID_NS, *(str(p) for p in parts)])


def _ds(x: float) -> str:
    """Format a float as a DICOM DS string (<= 16 chars)."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s if len(s) <= 16 else f"{x:.8g}"


def _da(d: date) -> str:
    return d.strftime("%Y%m%d")


def _tm(seconds: float) -> str:
    micro = round(seconds * 1e6) % (86_400 * 1_000_000)
    s, us = divmod(micro, 1_000_000)
    return f"{s // 3600:02d}{s % 3600 // 60:02d}{s % 60:02d}.{us:06d}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _triangle(x: float) -> float:
    """Triangle wave in [0, 1] with period 2, so long series keep varying."""
    u = x % 2.0
    return u if u <= 1.0 else 2.0 - u


def _bump(t: float, lo: float, hi: float) -> float:
    """Smooth 0 -> 1 -> 0 bump over [lo, hi]."""
    if t <= lo or t >= hi:
        return 0.0
    return float(np.sin(np.pi * (t - lo) / (hi - lo)) ** 0.5)


def _stable_rng(*parts: object) -> np.random.Generator:
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


# Painting ---------------------------------------------------------------------------

_Op = tuple[slice, slice, np.ndarray]


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> _Op | None:
    """Mask of an axis-aligned ellipse restricted to its bounding box (pixel units)."""
    if ry < 0.5 or rx < 0.5:
        return None
    y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 2, size)
    x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 2, size)
    if y0 >= y1 or x0 >= x1:
        return None
    yy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy)) / np.float32(ry)
    xx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx)) / np.float32(rx)
    mask = (yy * yy)[:, None] + (xx * xx)[None, :] <= 1.0
    return slice(y0, y1), slice(x0, x1), mask


def _paint(img: np.ndarray, op: _Op | None, value: float) -> None:
    if op is not None:
        sy, sx, mask = op
        img[sy, sx][mask] = value


def _noise_fields(
    rng: np.random.Generator, size: int, sigma: float, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """Two cached noise fields; each slice adds both at independent offsets.

    Summing two fields at independent offsets keeps the per-slice noise
    distinct (no repeated byte runs a long-range compressor could exploit)
    while costing only two additions per slice.
    """
    n = size + _NOISE_PAD
    s = sigma / np.sqrt(2.0)
    fields = []
    for _ in range(2):
        f = rng.standard_normal((n, n), dtype=np.float32) * np.float32(s)
        fields.append(np.rint(f).astype(dtype) if np.dtype(dtype).kind == "i" else f.astype(dtype))
    return fields[0], fields[1]


def _add_noise(
    img: np.ndarray, fields: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
) -> None:
    size = img.shape[0]
    oy1, ox1, oy2, ox2 = (int(v) for v in rng.integers(0, _NOISE_PAD + 1, size=4))
    img += fields[0][oy1 : oy1 + size, ox1 : ox1 + size]
    img += fields[1][oy2 : oy2 + size, ox2 : ox2 + size]


# --------------------------------------------------------------------------------------
# Metadata model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    name: str
    sex: str
    birth_date: date
    height_m: float
    weight_kg: float
    institution: int


@dataclass(frozen=True)
class _Study:
    modality: str
    uid: str
    study_id: str
    accession: str
    day: date
    time_s: float
    description: str
    code: tuple[str, str, str]  # CodeValue, CodingSchemeDesignator, CodeMeaning
    referring: str
    pps_uid: str
    frame_uid: str


@dataclass(frozen=True)
class _Series:
    uid: str
    number: int
    protocol_index: int
    time_s: float
    n_slices: int
    irradiation_uid: str


def _make_patient(patient_id: str, rng: np.random.Generator) -> _Patient:
    sex = "F" if rng.random() < 0.5 else "M"
    first = (_FIRST_F if sex == "F" else _FIRST_M)[int(rng.integers(len(_FIRST_F)))]
    last = _LAST[int(rng.integers(len(_LAST)))]
    birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 60)))
    height = float(rng.normal(1.64 if sex == "F" else 1.77, 0.07))
    weight = float(rng.normal(24.0, 3.5)) * height * height
    return _Patient(
        patient_id=patient_id,
        name=f"{last}^{first}",
        sex=sex,
        birth_date=birth,
        height_m=round(height, 2),
        weight_kg=round(max(weight, 40.0), 1),
        institution=int(rng.integers(len(_INSTITUTIONS))),
    )


def _make_study(
    modality: str, uid: str, rng: np.random.Generator, patient: _Patient, base: date
) -> _Study:
    day = base
    if day < patient.birth_date + timedelta(days=365 * 18):
        day = patient.birth_date + timedelta(days=365 * 18 + int(rng.integers(0, 3000)))
    if modality == "CT":
        description, code = "CT CHEST W/O CONTRAST", ("71250", "CPT4", "CT THORAX W/O CONTRAST")
    else:
        description, code = "MRI BRAIN W/O CONTRAST", ("70551", "CPT4", "MRI BRAIN W/O CONTRAST")
    return _Study(
        modality=modality,
        uid=uid,
        study_id=str(int(rng.integers(1000, 99999))),
        accession=f"A{int(rng.integers(10**7, 10**8))}",
        day=day,
        time_s=float(rng.integers(7 * 3600, 18 * 3600)),
        description=description,
        code=code,
        referring=_REFERRING[int(rng.integers(len(_REFERRING)))],
        pps_uid=_uid(uid, "pps"),
        frame_uid=_uid(uid, "frame-of-reference"),
    )


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


def _common_header(
    ds: Dataset,
    *,
    patient: _Patient,
    study: _Study,
    series: _Series,
    sop_class: str,
    series_description: str,
    protocol_name: str,
    body_part: str,
    model: str,
) -> None:
    """Patient / study / series / equipment modules shared by CT and MR."""
    institution, address = _INSTITUTIONS[patient.institution]
    study_date = _da(study.day)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = _tm(series.time_s + 60.0)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ""  # set per slice
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = _tm(study.time_s)
    ds.SeriesTime = _tm(series.time_s)
    ds.AcquisitionTime = _tm(series.time_s)
    ds.ContentTime = _tm(series.time_s)
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    ds.Manufacturer = "SynthScan Medical"
    ds.InstitutionName = institution
    ds.InstitutionAddress = address
    ds.ReferringPhysicianName = study.referring
    ds.StationName = f"{study.modality}SCAN{patient.institution + 1:02d}"
    ds.StudyDescription = study.description
    ds.ProcedureCodeSequence = Sequence([_code_item(*study.code)])
    ds.SeriesDescription = series_description
    ds.InstitutionalDepartmentName = "Radiology"
    ds.OperatorsName = _OPERATORS[(series.number + patient.institution) % len(_OPERATORS)]
    ds.ManufacturerModelName = model
    pps = Dataset()
    pps.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step
    pps.ReferencedSOPInstanceUID = study.pps_uid
    ds.ReferencedPerformedProcedureStepSequence = Sequence([pps])
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "IAC-SYNTH"
    ds.PatientBirthDate = _da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = _age(patient.birth_date, study.day)
    ds.PatientSize = _ds(patient.height_m)
    ds.PatientWeight = _ds(patient.weight_kg)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SYNTHETIC DATA - NO REAL PATIENT"
    ds.BodyPartExamined = body_part
    ds.DeviceSerialNumber = f"{90000 + patient.institution * 17 + (study.modality == 'MR')}"
    ds.SoftwareVersions = "SYN_4.2.1"
    ds.ProtocolName = protocol_name
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 0  # set per slice
    ds.FrameOfReferenceUID = study.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.PerformedProcedureStepStartDate = study_date
    ds.PerformedProcedureStepStartTime = _tm(study.time_s)
    ds.PerformedProcedureStepID = f"PPS{study.study_id}"
    ds.PerformedProcedureStepDescription = study.description


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _image_pixel_module(ds: Dataset, size: int, spacing: float) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def _file_meta(sop_class: str, source_ae: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID("")  # set per slice
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    meta.SourceApplicationEntityTitle = source_ae
    return meta


# --------------------------------------------------------------------------------------
# Fast Part-10 encoding: the static header is encoded once per series
# --------------------------------------------------------------------------------------

_PREAMBLE = b"\x00" * 128 + b"DICM"
_SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH",
     "SL", "SS", "ST", "TM", "UI", "UL", "US"}
)  # fmt: skip


def _encode(ds: Dataset) -> bytes:
    """Reference encoder: pydicom's Part-10 writer."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _encode_elements(part: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, part)
    return fp.getvalue()


def _explicit_le(tag: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (value padded to even length)."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "OW") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _SHORT_VRS:
        return head + struct.pack("<H", len(value)) + value
    return head + b"\x00\x00" + struct.pack("<I", len(value)) + value


class _SeriesRenderer:
    """Shared slice encoder of :class:`_CTSeries` / :class:`_MRSeries`.

    Encoding ~100 header elements through pydicom costs several ms per slice,
    more than rendering the pixels, so the header is encoded once per series:
    the template is split into the runs of elements between the per-slice
    ("volatile") elements, each run is encoded by pydicom once, and each slice
    only encodes its volatile elements and pixel data.  The output is
    byte-identical to ``template.save_as(..., enforce_file_format=True)``
    (:meth:`render_reference`, checked by the tests).
    """

    series: _Series
    template: Dataset

    def pixels(self, instance_number: int) -> np.ndarray:
        raise NotImplementedError

    def slice_values(self, instance_number: int) -> dict[str, str | list[str]]:
        raise NotImplementedError

    def _init_encoder(self, template: Dataset) -> None:
        self.template = template
        volatile = [*self.slice_values(1), "PixelData"]
        volatile_tags = {int(Tag(kw)) for kw in volatile}
        self._vr = {kw: dictionary_VR(kw) for kw in volatile}
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
        # file meta: encoded once with a placeholder SOP Instance UID of the same length
        self._meta_uid = str(_uid(self.series.uid, "meta-placeholder"))
        template.file_meta.MediaStorageSOPInstanceUID = UID(self._meta_uid)
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_file_meta_info(fp, template.file_meta, enforce_standard=True)
        self._meta = fp.getvalue()

    def _meta_bytes(self, sop_uid: str) -> bytes:
        if len(sop_uid) == len(self._meta_uid):
            return self._meta.replace(self._meta_uid.encode("ascii"), sop_uid.encode("ascii"), 1)
        meta = FileMetaDataset(self.template.file_meta)  # other length: re-encode (slow path)
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_file_meta_info(fp, meta, enforce_standard=True)
        return fp.getvalue()

    def render(self, instance_number: int) -> bytes:
        """Full DICOM Part-10 bytes of slice ``instance_number`` (1-based)."""
        values = self.slice_values(instance_number)
        pixel_bytes = self.pixels(instance_number).tobytes()
        parts = [_PREAMBLE, self._meta_bytes(str(values["SOPInstanceUID"]))]
        for seg in self._segments:
            if isinstance(seg, bytes):
                parts.append(seg)
            elif seg == "PixelData":
                parts.append(_explicit_le(0x7FE00010, "OW", pixel_bytes))
            else:
                value = values[seg]
                text = value if isinstance(value, str) else "\\".join(value)
                parts.append(_explicit_le(int(Tag(seg)), self._vr[seg], text.encode("ascii")))
        return b"".join(parts)

    def render_reference(self, instance_number: int) -> bytes:
        """Same as :meth:`render` but through pydicom's writer (slow; for tests)."""
        values = self.slice_values(instance_number)
        ds = self.template
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(str(values["SOPInstanceUID"]))
        ds.PixelData = self.pixels(instance_number).tobytes()
        return _encode(ds)


# --------------------------------------------------------------------------------------
# CT series: chest phantom + header template
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CTAnatomy:
    fov_mm: float
    body_a_mm: float  # half width (left-right)
    body_b_mm: float  # half depth (antero-posterior)
    fat_mm: float
    offset_y_mm: float
    d0_mm: float  # anatomy coordinate of the first slice
    z_top_mm: float  # patient z of the first slice
    table_height_mm: float


def _ct_anatomy(rng: np.random.Generator) -> _CTAnatomy:
    return _CTAnatomy(
        fov_mm=float(rng.uniform(340.0, 420.0)),
        body_a_mm=float(rng.uniform(135.0, 170.0)),
        body_b_mm=float(rng.uniform(95.0, 120.0)),
        fat_mm=float(rng.uniform(8.0, 22.0)),
        offset_y_mm=float(rng.uniform(-12.0, 4.0)),
        d0_mm=float(rng.uniform(0.0, 60.0)),
        z_top_mm=float(rng.uniform(-80.0, 40.0)),
        table_height_mm=float(rng.uniform(140.0, 190.0)),
    )


class _CTSeries(_SeriesRenderer):
    """Renders one CT series: phantom precomputed once, cheap per-slice variation."""

    def __init__(
        self,
        *,
        patient: _Patient,
        study: _Study,
        series: _Series,
        anatomy: _CTAnatomy,
        rng: np.random.Generator,
        size: int,
    ) -> None:
        self.series = series
        self.rng = rng
        self.size = size
        self.anatomy = anatomy
        self.protocol = protocol = _CT_PROTOCOLS[series.protocol_index % len(_CT_PROTOCOLS)]
        self.spacing = spacing = anatomy.fov_mm / size
        px = 1.0 / spacing  # pixels per mm
        c = (size - 1) / 2.0
        self.cy, self.cx = c + anatomy.offset_y_mm * px, c
        self.a, self.b = anatomy.body_a_mm * px, anatomy.body_b_mm * px
        a, b, cy, cx = self.a, self.b, self.cy, self.cx

        base = np.full((size, size), -1000, dtype=np.int16)  # air
        table_top = cy + b + 12.0 * px
        t0, t1 = int(table_top), int(table_top + 9.0 * px) + 1
        if t0 < size:
            base[t0 : min(t1, size), :] = 120  # patient table
        _paint(base, _ellipse(size, cy, cx, b, a), -100)  # subcutaneous fat
        fat = anatomy.fat_mm * px
        _paint(base, _ellipse(size, cy, cx, b - fat, a - fat), 40)  # muscle / soft tissue
        # slow smooth variation of soft tissue (beam hardening, partial volume), computed once
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        smooth = 6.0 * np.cos((yy - cy) / (0.9 * b + 1)) * np.cos((xx - cx) / (1.1 * a + 1))
        soft = base == 40
        base[soft] += np.rint(smooth[soft]).astype(np.int16)
        self.base = base
        # FOV circle: reconstruction outside it is padded to stored value 0 (-1024 HU)
        r = size / 2.0
        self.fov = (((yy - c) ** 2 + (xx - c) ** 2) <= r * r).astype(np.int16)
        # static structures painted on top of the dynamic organs
        sp_y = cy + 0.62 * b
        self.overlay: list[tuple[_Op | None, float]] = [
            (_ellipse(size, sp_y, cx, 17.0 * px, 19.0 * px), 700.0),  # vertebral cortex
            (_ellipse(size, sp_y, cx, 13.0 * px, 15.0 * px), 240.0),  # cancellous bone
            (_ellipse(size, sp_y + 24.0 * px, cx, 7.0 * px, 7.0 * px), 15.0),  # spinal canal
            (_ellipse(size, sp_y - 27.0 * px, cx + 18.0 * px, 12.0 * px, 12.0 * px), 45.0),  # aorta
        ]
        self.noise = _noise_fields(rng, size, protocol.noise_hu, np.int16)
        self._init_encoder(self._template(patient, study, series))

    def _template(self, patient: _Patient, study: _Study, series: _Series) -> Dataset:
        p, an = self.protocol, self.anatomy
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, "SYNTH_CT")
        _common_header(
            ds,
            patient=patient,
            study=study,
            series=series,
            sop_class=CTImageStorage,
            series_description=p.description,
            protocol_name="CHEST ROUTINE",
            body_part="CHEST",
            model="SynthCT 128",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ScanOptions = "HELICAL MODE"
        ds.SliceThickness = _ds(p.thickness_mm)
        ds.KVP = str(p.kvp)
        ds.SpacingBetweenSlices = _ds(p.thickness_mm)
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = _ds(an.fov_mm)
        ds.DistanceSourceToDetector = "946.746"
        ds.DistanceSourceToPatient = "538.52"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = _ds(an.table_height_mm)
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = str(p.ma)
        ds.Exposure = str(p.ma // 2)
        ds.FilterType = "BODY FILTER"
        ds.GeneratorPower = str(p.kvp * p.ma // 1000)
        ds.FocalSpots = "1.2"
        ds.ConvolutionKernel = p.kernel
        ds.PatientPosition = "FFS"
        ds.RevolutionTime = 0.5
        ds.SingleCollimationWidth = 0.625
        ds.TotalCollimationWidth = 40.0
        ds.TableSpeed = 78.75
        ds.TableFeedPerRotation = 39.375
        ds.SpiralPitchFactor = 0.984375
        ds.CTDIvol = 9.87
        ds.IrradiationEventUID = series.irradiation_uid
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["0", "0", "0"]  # set per slice
        ds.SliceLocation = "0"  # set per slice
        _image_pixel_module(ds, self.size, self.spacing)
        ds.WindowCenter = str(p.window_center)
        ds.WindowWidth = str(p.window_width)
        ds.WindowCenterWidthExplanation = "WINDOW1"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = b""
        ds["PixelData"].VR = "OW"
        return ds

    def pixels(self, instance_number: int) -> np.ndarray:
        """Stored (uint16, little endian) pixels of slice ``instance_number`` (1-based)."""
        size, a, b, cy, cx = self.size, self.a, self.b, self.cy, self.cx
        d_mm = self.anatomy.d0_mm + (instance_number - 1) * self.protocol.thickness_mm
        t = _triangle(d_mm / _CT_ANATOMY_MM)  # 0 = apex of the lungs, 1 = upper abdomen
        img = self.base.copy()
        fl = _bump(t, 0.02, 0.88)
        for side in (-1.0, 1.0):
            lx = cx + side * 0.5 * a
            _paint(img, _ellipse(size, cy - 0.08 * b, lx, 0.66 * b * fl, 0.34 * a * fl), -850.0)
            # a few small vessels inside the lung
            _paint(
                img,
                _ellipse(size, cy - 0.15 * b, lx - side * 0.08 * a, 0.05 * b * fl, 0.05 * b * fl),
                -100.0,
            )
        fh = _bump(t, 0.35, 0.85)
        _paint(
            img, _ellipse(size, cy - 0.12 * b, cx + 0.13 * a, 0.42 * b * fh, 0.33 * a * fh), 45.0
        )
        fv = min(max((t - 0.68) / 0.22, 0.0), 1.0)  # liver dome rising into the slices
        _paint(img, _ellipse(size, cy + 0.02 * b, cx - 0.34 * a, 0.62 * b * fv, 0.5 * a * fv), 60.0)
        for op, value in self.overlay:
            _paint(img, op, value)
        _add_noise(img, self.noise, self.rng)
        img += 1024
        np.clip(img, 0, 4095, out=img)
        img *= self.fov
        return img.astype("<u2")

    def slice_values(self, instance_number: int) -> dict[str, str | list[str]]:
        """Header values that change from slice to slice."""
        an = self.anatomy
        z = an.z_top_mm - (instance_number - 1) * self.protocol.thickness_mm
        origin = -(self.size - 1) / 2.0 * self.spacing
        acq = self.series.time_s + 0.35 * (instance_number - 1)
        return {
            "SOPInstanceUID": _uid(self.series.uid, instance_number),
            "AcquisitionTime": _tm(acq),
            "ContentTime": _tm(acq + 30.0),
            "InstanceNumber": str(instance_number),
            "ImagePositionPatient": [_ds(origin), _ds(origin), _ds(z)],
            "SliceLocation": _ds(z),
        }


# --------------------------------------------------------------------------------------
# MR series: head phantom + header template
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MRAnatomy:
    fov_mm: float
    head_a_mm: float  # half width
    head_b_mm: float  # half depth
    d0_mm: float
    z_bottom_mm: float
    ventricle_mm: float


def _mr_anatomy(rng: np.random.Generator) -> _MRAnatomy:
    return _MRAnatomy(
        fov_mm=float(rng.uniform(220.0, 250.0)),
        head_a_mm=float(rng.uniform(68.0, 78.0)),
        head_b_mm=float(rng.uniform(86.0, 98.0)),
        d0_mm=float(rng.uniform(10.0, 40.0)),
        z_bottom_mm=float(rng.uniform(-60.0, -20.0)),
        ventricle_mm=float(rng.uniform(5.0, 10.0)),
    )


class _MRSeries(_SeriesRenderer):
    """Renders one MR series (axial brain): bias field and noise precomputed per series."""

    def __init__(
        self,
        *,
        patient: _Patient,
        study: _Study,
        series: _Series,
        anatomy: _MRAnatomy,
        rng: np.random.Generator,
        size: int,
    ) -> None:
        self.series = series
        self.rng = rng
        self.size = size
        self.anatomy = anatomy
        self.protocol = protocol = _MR_PROTOCOLS[series.protocol_index % len(_MR_PROTOCOLS)]
        self.spacing = anatomy.fov_mm / size
        self.step_mm = protocol.thickness_mm + protocol.gap_mm
        c = (size - 1) / 2.0
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        # receive-coil bias field: smooth, brighter towards the posterior / one side
        tilt = float(rng.uniform(-0.08, 0.08))
        self.bias = (
            1.0
            + 0.10 * np.cos((yy - 0.8 * size) / (0.7 * size)) * np.cos((xx - c) / (0.9 * size))
            + tilt * (xx - c) / size
        ).astype(np.float32)
        self.noise = _noise_fields(rng, size, protocol.noise, np.float32)
        self._init_encoder(self._template(patient, study, series))

    def _template(self, patient: _Patient, study: _Study, series: _Series) -> Dataset:
        p = self.protocol
        ds = Dataset()
        ds.file_meta = _file_meta(MRImageStorage, "SYNTH_MR")
        _common_header(
            ds,
            patient=patient,
            study=study,
            series=series,
            sop_class=MRImageStorage,
            series_description=p.description,
            protocol_name=f"BRAIN {p.description}",
            body_part="HEAD",
            model="SynthMR 3T",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = list(p.scanning_sequence)
        ds.SequenceVariant = list(p.sequence_variant)
        ds.ScanOptions = ["SAT1", "FS"] if p.ti_ms is None else ["IR"]
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = p.sequence_name
        ds.AngioFlag = "N"
        ds.SliceThickness = _ds(p.thickness_mm)
        ds.RepetitionTime = _ds(p.tr_ms)
        ds.EchoTime = _ds(p.te_ms)
        if p.ti_ms is not None:
            ds.InversionTime = _ds(p.ti_ms)
        ds.NumberOfAverages = "1"
        ds.ImagingFrequency = "123.251815"
        ds.ImagedNucleus = "1H"
        ds.EchoNumbers = "1"
        ds.MagneticFieldStrength = "3"
        ds.SpacingBetweenSlices = _ds(self.step_mm)
        ds.NumberOfPhaseEncodingSteps = str(int(self.size * 0.75))
        ds.EchoTrainLength = str(p.etl)
        ds.PercentSampling = "100"
        ds.PercentPhaseFieldOfView = "81.25"
        ds.PixelBandwidth = "220"
        ds.ReceiveCoilName = "HeadNeck_20"
        ds.TransmitCoilName = "Body"
        ds.AcquisitionMatrix = [0, self.size, int(self.size * 0.75), 0]
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.FlipAngle = _ds(p.flip_deg)
        ds.VariableFlipAngleFlag = "N"
        ds.SAR = "0.812"
        ds.dBdt = "0"
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["0", "0", "0"]  # set per slice
        ds.SliceLocation = "0"  # set per slice
        _image_pixel_module(ds, self.size, self.spacing)
        wc = p.contrast[4] if p.contrast[4] > p.contrast[3] else p.contrast[3]
        ds.WindowCenter = _ds(round(wc * 0.8))
        ds.WindowWidth = _ds(round(wc * 1.6))
        ds.WindowCenterWidthExplanation = "Algo1"
        ds.PixelData = b""
        ds["PixelData"].VR = "OW"
        return ds

    def pixels(self, instance_number: int) -> np.ndarray:
        """Stored (uint16, little endian) pixels of slice ``instance_number`` (1-based)."""
        size, an, p = self.size, self.anatomy, self.protocol
        px = 1.0 / self.spacing
        d_mm = an.d0_mm + (instance_number - 1) * self.step_mm
        t = _triangle(d_mm / _MR_ANATOMY_MM)  # 0 = skull base, 1 = vertex
        g = float(np.sqrt(max(1.0 - max(t - 0.35, 0.0) ** 2 / 0.72**2, 0.0)))
        g = max(g, 0.18) * (0.9 + 0.1 * min(t / 0.35, 1.0))
        c = (size - 1) / 2.0
        cy, cx = c + 4.0 * px, c
        a, b = an.head_a_mm * px * g, an.head_b_mm * px * g
        fat, skull, csf, gm, wm = p.contrast
        img = np.zeros((size, size), dtype=np.float32)
        _paint(img, _ellipse(size, cy, cx, b, a), fat)  # scalp
        _paint(img, _ellipse(size, cy, cx, b - 5 * px, a - 5 * px), skull)
        _paint(img, _ellipse(size, cy, cx, b - 11 * px, a - 11 * px), csf)
        _paint(img, _ellipse(size, cy, cx, b - 13 * px, a - 13 * px), gm)
        _paint(img, _ellipse(size, cy + 2 * px, cx, 0.72 * (b - 13 * px), 0.68 * (a - 13 * px)), wm)
        fvent = _bump(t, 0.35, 0.75)
        vr = an.ventricle_mm * px * fvent
        for side in (-1.0, 1.0):
            _paint(img, _ellipse(size, cy - 0.05 * b, cx + side * 0.12 * a, 3.0 * vr, vr), csf)
        feye = _bump(t, -0.1, 0.22)
        for side in (-1.0, 1.0):  # orbits / vitreous at the lowest slices
            ey, ex = cy - 0.78 * b, cx + side * 0.42 * a
            _paint(img, _ellipse(size, ey, ex, 12 * px * feye, 12 * px * feye), fat)
            _paint(img, _ellipse(size, ey, ex, 10 * px * feye, 10 * px * feye), csf)
        img *= self.bias
        _add_noise(img, self.noise, self.rng)
        np.abs(img, out=img)  # magnitude image: Rician-like background
        np.clip(img, 0.0, 4095.0, out=img)
        return np.rint(img).astype("<u2")

    def slice_values(self, instance_number: int) -> dict[str, str | list[str]]:
        """Header values that change from slice to slice."""
        an = self.anatomy
        z = an.z_bottom_mm + (instance_number - 1) * self.step_mm
        origin = -(self.size - 1) / 2.0 * self.spacing
        acq = self.series.time_s + 4.0 * (instance_number - 1) / max(self.series.n_slices, 1)
        return {
            "SOPInstanceUID": _uid(self.series.uid, instance_number),
            "AcquisitionTime": _tm(acq),
            "ContentTime": _tm(acq + 45.0),
            "InstanceNumber": str(instance_number),
            "ImagePositionPatient": [_ds(origin), _ds(origin - 12.0), _ds(z)],
            "SliceLocation": _ds(z),
        }


# --------------------------------------------------------------------------------------
# Standalone slice factories
# --------------------------------------------------------------------------------------


def _standalone_context(
    modality: str, patient_id: str, study_uid: str, series_uid: str, series_number: int, n: int
) -> tuple[_Patient, _Study, _Series]:
    patient = _make_patient(patient_id, _stable_rng(_UID_NS, "patient", patient_id))
    srng = _stable_rng(_UID_NS, "study", study_uid)
    base = date(2016, 1, 1) + timedelta(days=int(srng.integers(0, 3000)))
    study = _make_study(modality, study_uid, srng, patient, base)
    series = _Series(
        uid=series_uid,
        number=series_number,
        protocol_index=series_number - 1,
        time_s=study.time_s + 120.0 * series_number,
        n_slices=n,
        irradiation_uid=_uid(series_uid, "irradiation"),
    )
    return patient, study, series


def make_ct_slice(
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    rng: np.random.Generator,
    size: int = 512,
    series_number: int = 1,
) -> bytes:
    """Return the DICOM Part-10 bytes of one synthetic CT chest slice.

    Header fields not given here (name, dates, ...) derive deterministically
    from ``patient_id`` / ``study_uid``; body shape and noise come from ``rng``.
    ``series_number`` picks the reconstruction protocol (1 = 2.5 mm STANDARD,
    2 = 1.25 mm LUNG, 3 = 5 mm SOFT, then cycling).  The phantom is rebuilt
    on each call; :func:`generate_corpus` reuses it across a series.

    >>> import io, numpy as np, pydicom
    >>> raw = make_ct_slice(patient_id="PAT-0000", study_uid="1.2.3", series_uid="1.2.3.4",
    ...                     instance_number=1, rng=np.random.default_rng(0), size=64)
    >>> raw[128:132], pydicom.dcmread(io.BytesIO(raw)).pixel_array.shape
    (b'DICM', (64, 64))
    """
    if instance_number < 1:
        raise ValueError("instance_number is 1-based")
    patient, study, series = _standalone_context(
        "CT", patient_id, study_uid, series_uid, series_number, instance_number
    )
    gen = _CTSeries(
        patient=patient, study=study, series=series, anatomy=_ct_anatomy(rng), rng=rng, size=size
    )
    return gen.render(instance_number)


def make_mr_slice(
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    rng: np.random.Generator,
    size: int = 256,
    series_number: int = 1,
) -> bytes:
    """Return the DICOM Part-10 bytes of one synthetic axial MR brain slice.

    ``series_number`` picks the contrast (1 = T1 SE, 2 = T2 TSE, 3 = FLAIR,
    then cycling); see :func:`make_ct_slice` for the other arguments.

    >>> import io, numpy as np, pydicom
    >>> raw = make_mr_slice(patient_id="PAT-0000", study_uid="1.2.3", series_uid="1.2.3.5",
    ...                     instance_number=3, rng=np.random.default_rng(0), size=32)
    >>> ds = pydicom.dcmread(io.BytesIO(raw))
    >>> ds.Modality, int(ds.InstanceNumber), ds.pixel_array.dtype.name
    ('MR', 3, 'uint16')
    """
    if instance_number < 1:
        raise ValueError("instance_number is 1-based")
    patient, study, series = _standalone_context(
        "MR", patient_id, study_uid, series_uid, series_number, instance_number
    )
    gen = _MRSeries(
        patient=patient, study=study, series=series, anatomy=_mr_anatomy(rng), rng=rng, size=size
    )
    return gen.render(instance_number)


# --------------------------------------------------------------------------------------
# Corpus planning and writing
# --------------------------------------------------------------------------------------

_MODALITY_CODE = {"CT": 1, "MR": 2}


@dataclass(frozen=True)
class _StudyPlan:
    patient: _Patient
    patient_index: int
    study: _Study
    series: tuple[_Series, ...]
    anatomy: _CTAnatomy | _MRAnatomy

    @property
    def short(self) -> str:
        return self.study.uid.rsplit(".", 1)[-1][-8:]


@dataclass(frozen=True)
class _ZipTask:
    path: Path
    patient_id: str
    studies: tuple[_StudyPlan, ...]


def _plan(spec: CorpusSpec) -> list[tuple[str, list[_StudyPlan]]]:
    """All metadata of the corpus (cheap); pixels are rendered later per zip."""
    plans: list[tuple[str, list[_StudyPlan]]] = []
    wanted = {
        "CT": spec.ct_series_per_patient if spec.ct_slices > 0 else 0,
        "MR": spec.mr_series_per_patient if spec.mr_slices > 0 else 0,
    }
    slices = {"CT": spec.ct_slices, "MR": spec.mr_slices}
    for i in range(spec.patients):
        pid = f"PAT-{i:04d}"
        prng = np.random.default_rng(np.random.SeedSequence([spec.seed, i, 0]))
        patient = _make_patient(pid, prng)
        base = date(2016, 1, 1) + timedelta(days=int(prng.integers(0, 3000)))
        studies: list[_StudyPlan] = []
        for modality in ("CT", "MR"):
            code = _MODALITY_CODE[modality]
            # always draw, so one modality's settings never shift the other's
            srng = np.random.default_rng(np.random.SeedSequence([spec.seed, i, code, 0]))
            day = base + timedelta(days=0 if modality == "CT" else int(srng.integers(3, 60)))
            study_uid = _uid(spec.seed, pid, modality, "study")
            study = _make_study(modality, study_uid, srng, patient, day)
            anatomy: _CTAnatomy | _MRAnatomy = (
                _ct_anatomy(srng) if modality == "CT" else _mr_anatomy(srng)
            )
            series = tuple(
                _Series(
                    uid=_uid(spec.seed, pid, modality, "series", k),
                    number=k + 1,
                    protocol_index=k,
                    time_s=study.time_s + 60.0 + 240.0 * k,
                    n_slices=slices[modality],
                    irradiation_uid=_uid(spec.seed, pid, modality, "irradiation", k),
                )
                for k in range(wanted[modality])
            )
            if series:
                studies.append(_StudyPlan(patient, i, study, series, anatomy))
        if studies:
            plans.append((pid, studies))
    return plans


def _series_renderer(
    plan: _StudyPlan, series: _Series, seed: int, spec: CorpusSpec
) -> _CTSeries | _MRSeries:
    modality = plan.study.modality
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, plan.patient_index, _MODALITY_CODE[modality], series.number])
    )
    if modality == "CT":
        assert isinstance(plan.anatomy, _CTAnatomy)
        return _CTSeries(patient=plan.patient, study=plan.study, series=series,
                         anatomy=plan.anatomy, rng=rng, size=spec.ct_size)  # fmt: skip
    assert isinstance(plan.anatomy, _MRAnatomy)
    return _MRSeries(patient=plan.patient, study=plan.study, series=series,
                     anatomy=plan.anatomy, rng=rng, size=spec.mr_size)  # fmt: skip


def _zipinfo(name: str, spec: CorpusSpec) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = spec.compression
    info.create_system = 3  # unix, whatever the host: keeps bytes identical across platforms
    info.external_attr = 0o100644 << 16
    return info


def _write_zip(task: _ZipTask, spec: CorpusSpec) -> tuple[int, int, int]:
    """Write one zip; return (dicom members, other members, dicom bytes)."""
    n_dicom = n_other = n_bytes = 0
    tmp = task.path.with_name(task.path.name + ".tmp")
    try:
        with zipfile.ZipFile(
            tmp, "w", compression=spec.compression, compresslevel=spec.compresslevel
        ) as zf:
            if spec.license_member:
                zf.writestr(
                    _zipinfo("LICENSE.txt", spec),
                    _LICENSE_TEXT.format(seed=spec.seed),
                    compresslevel=spec.compresslevel,
                )
                n_other += 1
            for plan in task.studies:
                for series in plan.series:
                    renderer = _series_renderer(plan, series, spec.seed, spec)
                    desc = renderer.protocol.description
                    folder = f"{task.patient_id}/{plan.short}/S{series.number:02d}_{_slug(desc)}"
                    for inst in range(1, series.n_slices + 1):
                        raw = renderer.render(inst)
                        zf.writestr(
                            _zipinfo(f"{folder}/{inst:04d}.dcm", spec),
                            raw,
                            compresslevel=spec.compresslevel,
                        )
                        n_dicom += 1
                        n_bytes += len(raw)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, task.path)
    return n_dicom, n_other, n_bytes


def generate_corpus(
    root: str | Path, spec: CorpusSpec = CorpusSpec(), *, workers: int | None = None
) -> CorpusSummary:
    """Write the synthetic corpus described by ``spec`` under ``root``.

    Existing zips of the same names are overwritten (written to ``*.tmp``
    then renamed).  Zips are produced in parallel by ``workers`` threads
    (default: ``os.cpu_count()``; deflate and numpy release the GIL); the
    output bytes do not depend on ``workers``.

    >>> import tempfile
    >>> spec = CorpusSpec(patients=1, ct_slices=2, mr_slices=2, zip_layout="study",
    ...                   ct_size=32, mr_size=32)
    >>> s = generate_corpus(tempfile.mkdtemp(), spec)
    >>> [p.name for p in s.zips], s.patients
    (['PAT-0000_1.zip', 'PAT-0000_2.zip'], ('PAT-0000',))
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tasks: list[_ZipTask] = []
    for pid, studies in _plan(spec):
        if spec.zip_layout == "patient":
            tasks.append(_ZipTask(root / f"{pid}.zip", pid, tuple(studies)))
        else:
            for n, plan in enumerate(studies, start=1):
                tasks.append(_ZipTask(root / f"{pid}_{n}.zip", pid, (plan,)))
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    if n_workers == 1:
        results = [_write_zip(t, spec) for t in tasks]
    else:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="corpus") as pool:
            results = list(pool.map(lambda t: _write_zip(t, spec), tasks))
    return CorpusSummary(
        root=root,
        zips=tuple(t.path for t in tasks),
        dicom_members=sum(r[0] for r in results),
        other_members=sum(r[1] for r in results),
        total_dicom_bytes=sum(r[2] for r in results),
        patients=tuple(dict.fromkeys(t.patient_id for t in tasks)),
    )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _main(argv: SequenceABC[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iac_spark.testing.corpus",
        description="Write a deterministic synthetic corpus of zipped DICOM archives.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--ct-series", type=int, default=1, help="CT series per patient")
    parser.add_argument("--ct-slices", type=int, default=20, help="slices per CT series")
    parser.add_argument("--mr-series", type=int, default=1, help="MR series per patient")
    parser.add_argument("--mr-slices", type=int, default=10, help="slices per MR series")
    parser.add_argument("--ct-size", type=int, default=512)
    parser.add_argument("--mr-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("patient", "study"), default="patient")
    parser.add_argument(
        "--compresslevel", type=int, default=None, help="deflate level (default: zlib's 6)"
    )
    parser.add_argument("--stored", action="store_true", help="ZIP_STORED instead of deflate")
    parser.add_argument("--no-license", action="store_true", help="omit LICENSE.txt members")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: CPU count)")
    args = parser.parse_args(argv)
    try:
        spec = CorpusSpec(
            patients=args.patients,
            ct_series_per_patient=args.ct_series,
            ct_slices=args.ct_slices,
            mr_series_per_patient=args.mr_series,
            mr_slices=args.mr_slices,
            zip_layout=args.layout,
            seed=args.seed,
            compression=zipfile.ZIP_STORED if args.stored else zipfile.ZIP_DEFLATED,
            license_member=not args.no_license,
            ct_size=args.ct_size,
            mr_size=args.mr_size,
            compresslevel=args.compresslevel,
        )
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    summary = generate_corpus(args.out_dir, spec, workers=args.workers)
    elapsed = time.perf_counter() - t0
    zip_bytes = sum(p.stat().st_size for p in summary.zips)
    print(f"root               {summary.root}")
    print(f"zips               {len(summary.zips)}")
    print(f"patients           {len(summary.patients)}")
    print(f"dicom members      {summary.dicom_members}")
    print(f"other members      {summary.other_members}")
    print(f"dicom bytes        {summary.total_dicom_bytes:,}")
    print(f"zip bytes          {zip_bytes:,}")
    if zip_bytes:
        print(f"ratio              {summary.total_dicom_bytes / zip_bytes:.2f}x")
    print(f"elapsed            {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
