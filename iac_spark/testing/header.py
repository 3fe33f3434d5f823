"""DICOM headers of the synthetic corpus: patients, studies, series and their modules.

Realistic scanner-style headers (~100 elements, sequences included) are
built bottom-up: :func:`make_patient` / :func:`make_study` draw the
identities, :class:`Series` names one series, and the module builders fill a
``pydicom`` :class:`~pydicom.dataset.Dataset`:

* :func:`file_meta` - the Part-10 file meta group;
* :func:`common_header` - patient / study / series / equipment modules shared
  by every modality;
* :func:`image_plane_module`, :func:`image_pixel_module` - the image grid;
* :func:`ct_image_module`, :func:`mr_image_module` - what only CT or only MR
  headers hold (acquisition, reconstruction, VOI LUT), driven by one of the
  :data:`CT_PROTOCOLS` / :data:`MR_PROTOCOLS`.

Per-slice values are left as placeholders; the series renderer sets them.
UIDs derive from their inputs through :func:`uid` (pydicom root
``1.2.826.0.1.3680043.8.498.``), so the same inputs give the same header.

Example
-------
>>> import numpy as np
>>> from pydicom.uid import CTImageStorage
>>> from iac_spark.testing.header import file_meta, fmt_ds, fmt_tm, make_patient
>>> patient = make_patient("PAT-0000", np.random.default_rng(0))
>>> patient.patient_id, patient.sex in ("F", "M"), "^" in patient.name
('PAT-0000', True, True)
>>> fmt_ds(0.1 + 0.2), fmt_tm(3600.5)
('0.3', '010000.500000')
>>> str(file_meta(CTImageStorage, "SYNTH_CT").TransferSyntaxUID)
'1.2.840.10008.1.2.1'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_ROOT_UID, UID, ExplicitVRLittleEndian, generate_uid

if TYPE_CHECKING:
    import numpy as np

    from iac_spark.testing.phantom import ChestAnatomy, HeadAnatomy

__all__ = [
    "CT_PROTOCOLS",
    "MR_PROTOCOLS",
    "UID_NS",
    "CTProtocol",
    "MRProtocol",
    "Patient",
    "Series",
    "Study",
    "common_header",
    "ct_image_module",
    "dicom_age",
    "file_meta",
    "fmt_da",
    "fmt_ds",
    "fmt_tm",
    "image_pixel_module",
    "image_plane_module",
    "make_patient",
    "make_study",
    "mr_image_module",
    "uid",
]

UID_NS = "iac_spark.testing.corpus/v1"  # entropy namespace of every generated UID and seed
_UID_PREFIX = PYDICOM_ROOT_UID  # "1.2.826.0.1.3680043.8.498."
_IMPLEMENTATION_UID = generate_uid(_UID_PREFIX, entropy_srcs=[UID_NS, "implementation"])
_IMPLEMENTATION_VERSION = "IACSPARK_SYN_1"

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


# ---- value formatting ------------------------------------------------------------------


def uid(*parts: object) -> UID:
    """The UID derived from ``parts`` (same parts, same UID).

    >>> uid("x", 1) == uid("x", 1) != uid("x", 2), uid("x", 1).is_valid
    (True, True)
    """
    return generate_uid(_UID_PREFIX, entropy_srcs=[UID_NS, *(str(p) for p in parts)])


def fmt_ds(x: float) -> str:
    """Format a number as a DICOM DS string (<= 16 chars).

    >>> fmt_ds(2.5), fmt_ds(-600), fmt_ds(-0.0000001)
    ('2.5', '-600', '0')
    """
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s if len(s) <= 16 else f"{x:.8g}"


def fmt_da(d: date) -> str:
    """Format a date as a DICOM DA string (``YYYYMMDD``)."""
    return d.strftime("%Y%m%d")


def fmt_tm(seconds: float) -> str:
    """Format seconds after midnight (wrapping at 24 h) as a DICOM TM string."""
    micro = round(seconds * 1e6) % (86_400 * 1_000_000)
    s, us = divmod(micro, 1_000_000)
    return f"{s // 3600:02d}{s % 3600 // 60:02d}{s % 60:02d}.{us:06d}"


def dicom_age(birth: date, on: date) -> str:
    """DICOM AS age in years (``"042Y"``) of someone born on ``birth``, on day ``on``."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


# ---- identities ------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    """One synthetic patient."""

    patient_id: str
    name: str
    sex: str
    birth_date: date
    height_m: float
    weight_kg: float
    institution: int  # index into the fixed institution list


@dataclass(frozen=True)
class Study:
    """One study of a patient (one modality)."""

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
class Series:
    """One series of a study."""

    uid: str
    number: int
    protocol_index: int  # into the modality's protocols, cycling
    time_s: float
    n_slices: int
    irradiation_uid: str


def make_patient(patient_id: str, rng: np.random.Generator) -> Patient:
    """Draw a patient's name, sex, birth date, size, weight and institution from ``rng``."""
    sex = "F" if rng.random() < 0.5 else "M"
    first = (_FIRST_F if sex == "F" else _FIRST_M)[int(rng.integers(len(_FIRST_F)))]
    last = _LAST[int(rng.integers(len(_LAST)))]
    birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 60)))
    height = float(rng.normal(1.64 if sex == "F" else 1.77, 0.07))
    weight = float(rng.normal(24.0, 3.5)) * height * height
    return Patient(
        patient_id=patient_id,
        name=f"{last}^{first}",
        sex=sex,
        birth_date=birth,
        height_m=round(height, 2),
        weight_kg=round(max(weight, 40.0), 1),
        institution=int(rng.integers(len(_INSTITUTIONS))),
    )


def make_study(
    *,
    modality: str,
    description: str,
    code: tuple[str, str, str],
    study_uid: str,
    rng: np.random.Generator,
    patient: Patient,
    day: date,
) -> Study:
    """Draw a study of ``patient`` on ``day`` (moved to adulthood if the patient is a minor)."""
    if day < patient.birth_date + timedelta(days=365 * 18):
        day = patient.birth_date + timedelta(days=365 * 18 + int(rng.integers(0, 3000)))
    return Study(
        modality=modality,
        uid=study_uid,
        study_id=str(int(rng.integers(1000, 99999))),
        accession=f"A{int(rng.integers(10**7, 10**8))}",
        day=day,
        time_s=float(rng.integers(7 * 3600, 18 * 3600)),
        description=description,
        code=code,
        referring=_REFERRING[int(rng.integers(len(_REFERRING)))],
        pps_uid=uid(study_uid, "pps"),
        frame_uid=uid(study_uid, "frame-of-reference"),
    )


# ---- protocols -------------------------------------------------------------------------


@dataclass(frozen=True)
class CTProtocol:
    """One CT reconstruction of the chest protocol."""

    description: str
    kernel: str
    thickness_mm: float
    noise_hu: float
    window_center: int
    window_width: int
    kvp: int
    ma: int

    @property
    def protocol_name(self) -> str:
        """``ProtocolName``: every reconstruction belongs to the same acquisition."""
        return "CHEST ROUTINE"

    @property
    def step_mm(self) -> float:
        """Distance between slice centres: contiguous slices."""
        return self.thickness_mm


@dataclass(frozen=True)
class MRProtocol:
    """One MR brain sequence."""

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

    @property
    def protocol_name(self) -> str:
        """``ProtocolName`` of the sequence."""
        return f"BRAIN {self.description}"

    @property
    def step_mm(self) -> float:
        """Distance between slice centres: thickness plus gap."""
        return self.thickness_mm + self.gap_mm


CT_PROTOCOLS = (
    CTProtocol("AX CHEST 2.5mm STD", "STANDARD", 2.5, 5.0, 40, 400, 120, 220),
    CTProtocol("AX CHEST 1.25mm LUNG", "LUNG", 1.25, 9.0, -600, 1500, 120, 220),
    CTProtocol("AX CHEST 5mm SOFT", "SOFT", 5.0, 3.5, 50, 350, 120, 220),
)
MR_PROTOCOLS = (
    MRProtocol("AX T1 SE", ("SE",), ("SP",), "se2d1", 550.0, 12.0, None, 90.0, 1, 5.0, 1.0, 7.0,
               (950.0, 40.0, 220.0, 560.0, 760.0)),
    MRProtocol("AX T2 TSE", ("SE",), ("SK", "SP"), "tse2d1_15", 4500.0, 95.0, None, 150.0, 15,
               5.0, 1.0, 9.0, (700.0, 35.0, 1500.0, 880.0, 620.0)),
    MRProtocol("AX FLAIR", ("SE", "IR"), ("SK", "SP", "MP"), "tir2d1_21", 9000.0, 85.0, 2500.0,
               150.0, 21, 5.0, 1.0, 8.0, (520.0, 30.0, 90.0, 720.0, 560.0)),
)  # fmt: skip


# ---- modules ---------------------------------------------------------------------------


def file_meta(sop_class: str, source_ae: str) -> FileMetaDataset:
    """File meta group; ``MediaStorageSOPInstanceUID`` is left empty (set per slice)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID("")  # set per slice
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    meta.SourceApplicationEntityTitle = source_ae
    return meta


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def common_header(
    ds: Dataset,
    *,
    patient: Patient,
    study: Study,
    series: Series,
    sop_class: str,
    series_description: str,
    protocol_name: str,
    body_part: str,
    model: str,
    scanner: int,
) -> None:
    """Patient / study / series / equipment modules shared by every modality.

    ``scanner`` numbers the modality's scanner at the patient's institution
    (it shifts ``DeviceSerialNumber``).  ``SOPInstanceUID`` and
    ``InstanceNumber`` are placeholders (set per slice).
    """
    institution, address = _INSTITUTIONS[patient.institution]
    study_date = fmt_da(study.day)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = fmt_tm(series.time_s + 60.0)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ""  # set per slice
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = fmt_tm(study.time_s)
    ds.SeriesTime = fmt_tm(series.time_s)
    ds.AcquisitionTime = fmt_tm(series.time_s)
    ds.ContentTime = fmt_tm(series.time_s)
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
    ds.PatientBirthDate = fmt_da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = dicom_age(patient.birth_date, study.day)
    ds.PatientSize = fmt_ds(patient.height_m)
    ds.PatientWeight = fmt_ds(patient.weight_kg)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SYNTHETIC DATA - NO REAL PATIENT"
    ds.BodyPartExamined = body_part
    ds.DeviceSerialNumber = f"{90000 + patient.institution * 17 + scanner}"
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
    ds.PerformedProcedureStepStartTime = fmt_tm(study.time_s)
    ds.PerformedProcedureStepID = f"PPS{study.study_id}"
    ds.PerformedProcedureStepDescription = study.description


def image_plane_module(ds: Dataset, *, thickness_mm: float, step_mm: float) -> None:
    """Axial image plane; ``ImagePositionPatient`` / ``SliceLocation`` are set per slice."""
    ds.SliceThickness = fmt_ds(thickness_mm)
    ds.SpacingBetweenSlices = fmt_ds(step_mm)
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["0", "0", "0"]  # set per slice
    ds.SliceLocation = "0"  # set per slice


def image_pixel_module(ds: Dataset, size: int, spacing: float) -> None:
    """Square 16-bit MONOCHROME2 grid (12 bits stored); ``PixelData`` (OW) set per slice."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [fmt_ds(spacing), fmt_ds(spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelData = b""
    ds["PixelData"].VR = "OW"


def ct_image_module(
    ds: Dataset, p: CTProtocol, anatomy: ChestAnatomy, series: Series, size: int
) -> None:
    """CT image, acquisition, reconstruction and VOI LUT elements (helical chest).

    Same signature as :func:`mr_image_module` (``size`` is not needed here).
    """
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ScanOptions = "HELICAL MODE"
    ds.KVP = str(p.kvp)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = fmt_ds(anatomy.fov_mm)
    ds.DistanceSourceToDetector = "946.746"
    ds.DistanceSourceToPatient = "538.52"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = fmt_ds(anatomy.table_height_mm)
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
    ds.WindowCenter = str(p.window_center)
    ds.WindowWidth = str(p.window_width)
    ds.WindowCenterWidthExplanation = "WINDOW1"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"


def mr_image_module(
    ds: Dataset, p: MRProtocol, anatomy: HeadAnatomy, series: Series, size: int
) -> None:
    """MR image and VOI LUT elements (2D axial brain at 3 T).

    Same signature as :func:`ct_image_module` (``anatomy`` and ``series`` are
    not needed here).
    """
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = list(p.scanning_sequence)
    ds.SequenceVariant = list(p.sequence_variant)
    ds.ScanOptions = ["SAT1", "FS"] if p.ti_ms is None else ["IR"]
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = p.sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = fmt_ds(p.tr_ms)
    ds.EchoTime = fmt_ds(p.te_ms)
    if p.ti_ms is not None:
        ds.InversionTime = fmt_ds(p.ti_ms)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.251815"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "3"
    ds.NumberOfPhaseEncodingSteps = str(int(size * 0.75))
    ds.EchoTrainLength = str(p.etl)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "81.25"
    ds.PixelBandwidth = "220"
    ds.ReceiveCoilName = "HeadNeck_20"
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, size, int(size * 0.75), 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = fmt_ds(p.flip_deg)
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.812"
    ds.dBdt = "0"
    ds.PatientPosition = "HFS"
    wc = p.contrast[4] if p.contrast[4] > p.contrast[3] else p.contrast[3]
    ds.WindowCenter = fmt_ds(round(wc * 0.8))
    ds.WindowWidth = fmt_ds(round(wc * 1.6))
    ds.WindowCenterWidthExplanation = "Algo1"
