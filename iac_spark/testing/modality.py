"""One spec per imaging modality, and the one series renderer that runs them all.

CT and MR series of the corpus are built the same way: draw the body of the
study once, precompute a phantom per series, build one header template per
series, then per slice render pixels, fill in the per-slice header values
and encode.  Everything that differs between the modalities sits in one
frozen :class:`ModalitySpec`: constants (SOP class, scanner, study code,
slice geometry and timing), the acquisition protocols, and three small
callables - draw the anatomy, make the phantom of a series, add the
modality's header module.  :data:`CT` (chest, helical, slices going
feet-wards) and :data:`MR` (brain, 2D multi-slice, slices going head-wards)
are the two specs; :class:`SeriesRenderer` renders a series of either.

Example
-------
>>> import io, numpy as np, pydicom
>>> from iac_spark.testing.modality import CT, MR, make_slice
>>> [p.description for p in MR.protocols]
['AX T1 SE', 'AX T2 TSE', 'AX FLAIR']
>>> raw = make_slice(CT, patient_id="PAT-0000", study_uid="1.2.3", series_uid="1.2.3.4",
...                  instance_number=2, rng=np.random.default_rng(0), size=32, series_number=2)
>>> ds = pydicom.dcmread(io.BytesIO(raw))
>>> ds.Modality, ds.SeriesDescription, ds.ConvolutionKernel, ds.pixel_array.shape
('CT', 'AX CHEST 1.25mm LUNG', 'LUNG', (32, 32))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Generic, Protocol, TypeVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage

from iac_spark.testing.header import (
    CT_PROTOCOLS,
    MR_PROTOCOLS,
    UID_NS,
    CTProtocol,
    MRProtocol,
    Patient,
    Series,
    Study,
    common_header,
    ct_image_module,
    file_meta,
    fmt_ds,
    fmt_tm,
    image_pixel_module,
    image_plane_module,
    make_patient,
    make_study,
    mr_image_module,
    uid,
)
from iac_spark.testing.phantom import (
    Anatomy,
    ChestAnatomy,
    ChestPhantom,
    HeadAnatomy,
    HeadPhantom,
    Phantom,
    stable_rng,
)
from iac_spark.testing.writer import SeriesEncoder

__all__ = [
    "CT",
    "MR",
    "ModalitySpec",
    "SeriesProtocol",
    "SeriesRenderer",
    "make_ct_slice",
    "make_mr_slice",
    "make_slice",
]


class SeriesProtocol(Protocol):
    """What the renderer reads of an acquisition protocol (:class:`CTProtocol`, ...)."""

    @property
    def description(self) -> str:
        """``SeriesDescription`` (also names the series folder in the zips)."""
        ...

    @property
    def protocol_name(self) -> str:
        """``ProtocolName``."""
        ...

    @property
    def thickness_mm(self) -> float:
        """``SliceThickness``."""
        ...

    @property
    def step_mm(self) -> float:
        """Distance between slice centres (``SpacingBetweenSlices``)."""
        ...


P = TypeVar("P", bound=SeriesProtocol)
A = TypeVar("A", bound=Anatomy)


@dataclass(frozen=True)
class ModalitySpec(Generic[P, A]):
    """Everything that differs between the series of two modalities.

    >>> CT.modality, CT.protocol(2).description, MR.protocol(4).description
    ('CT', 'AX CHEST 5mm SOFT', 'AX T2 TSE')
    """

    modality: str  # DICOM Modality
    seed_word: int  # seeds this modality's random streams: never reuse one
    sop_class: str
    source_ae: str  # file meta SourceApplicationEntityTitle
    model: str  # ManufacturerModelName
    scanner: int  # which scanner of the institution (DeviceSerialNumber)
    body_part: str
    study_description: str
    procedure_code: tuple[str, str, str]  # CodeValue, CodingSchemeDesignator, CodeMeaning
    # days after the patient's first study, drawn in [lo, hi); None: that same day
    study_delay_days: tuple[int, int] | None
    protocols: tuple[P, ...]  # series k uses protocols[k % len]
    draw_anatomy: Callable[[np.random.Generator], A]  # the body of one study
    phantom: Callable[[A, P, int, np.random.Generator], Phantom]  # (anatomy, protocol, size, rng)
    image_module: Callable[[Dataset, P, A, Series, int], None]  # modality-only header elements
    z_direction: float  # +1.0: slices go head-wards from anatomy.z0_mm, -1.0: feet-wards
    y_shift_mm: float  # ImagePositionPatient y minus x
    slice_time_s: Callable[[int, int], float]  # (slice index, slices) -> s after series start
    content_delay_s: float  # ContentTime minus AcquisitionTime

    def protocol(self, index: int) -> P:
        """The protocol of the series with ``protocol_index`` ``index`` (cycling)."""
        return self.protocols[index % len(self.protocols)]

    def make_study(
        self, *, study_uid: str, rng: np.random.Generator, patient: Patient, day: date
    ) -> Study:
        """A study of this modality (see :func:`~iac_spark.testing.header.make_study`)."""
        return make_study(
            modality=self.modality,
            description=self.study_description,
            code=self.procedure_code,
            study_uid=study_uid,
            rng=rng,
            patient=patient,
            day=day,
        )


def _chest(anatomy: ChestAnatomy, p: CTProtocol, size: int, rng: np.random.Generator) -> Phantom:
    return ChestPhantom(anatomy, size, noise_hu=p.noise_hu, rng=rng)


def _head(anatomy: HeadAnatomy, p: MRProtocol, size: int, rng: np.random.Generator) -> Phantom:
    return HeadPhantom(anatomy, size, contrast=p.contrast, noise=p.noise, rng=rng)


def _helical(index: int, n_slices: int) -> float:
    """One slice every 0.35 s as the table moves."""
    return 0.35 * index


def _multislice(index: int, n_slices: int) -> float:
    """All slices interleaved within the same 4 s."""
    return 4.0 * index / max(n_slices, 1)


CT: ModalitySpec[CTProtocol, ChestAnatomy] = ModalitySpec(
    modality="CT",
    seed_word=1,
    sop_class=CTImageStorage,
    source_ae="SYNTH_CT",
    model="SynthCT 128",
    scanner=0,
    body_part="CHEST",
    study_description="CT CHEST W/O CONTRAST",
    procedure_code=("71250", "CPT4", "CT THORAX W/O CONTRAST"),
    study_delay_days=None,
    protocols=CT_PROTOCOLS,
    draw_anatomy=ChestAnatomy.draw,
    phantom=_chest,
    image_module=ct_image_module,
    z_direction=-1.0,
    y_shift_mm=0.0,
    slice_time_s=_helical,
    content_delay_s=30.0,
)
"""Axial CT chest: 512x512 by default, HU = stored - 1024, three reconstructions."""

MR: ModalitySpec[MRProtocol, HeadAnatomy] = ModalitySpec(
    modality="MR",
    seed_word=2,
    sop_class=MRImageStorage,
    source_ae="SYNTH_MR",
    model="SynthMR 3T",
    scanner=1,
    body_part="HEAD",
    study_description="MRI BRAIN W/O CONTRAST",
    procedure_code=("70551", "CPT4", "MRI BRAIN W/O CONTRAST"),
    study_delay_days=(3, 60),
    protocols=MR_PROTOCOLS,
    draw_anatomy=HeadAnatomy.draw,
    phantom=_head,
    image_module=mr_image_module,
    z_direction=1.0,
    y_shift_mm=-12.0,
    slice_time_s=_multislice,
    content_delay_s=45.0,
)
"""Axial MR brain: 256x256 by default, T1 SE / T2 TSE / FLAIR contrasts."""


class SeriesRenderer(Generic[P, A]):
    """Renders the slices of one series of ``spec``'s modality.

    The phantom (drawing from ``rng``) and the header template are made once;
    :meth:`render` then costs one phantom slice plus a few encoded elements.
    Slices must be rendered in order for reproducible noise (each one draws
    from ``rng``).
    """

    def __init__(
        self,
        spec: ModalitySpec[P, A],
        *,
        patient: Patient,
        study: Study,
        series: Series,
        anatomy: A,
        rng: np.random.Generator,
        size: int,
    ) -> None:
        self.spec = spec
        self.series = series
        self.anatomy = anatomy
        self.size = size
        self.protocol = spec.protocol(series.protocol_index)
        self.phantom = spec.phantom(anatomy, self.protocol, size, rng)
        self.encoder = SeriesEncoder(
            self._template(patient, study),
            volatile=tuple(self.slice_values(1)),
            meta_placeholder_uid=str(uid(series.uid, "meta-placeholder")),
        )

    def _template(self, patient: Patient, study: Study) -> Dataset:
        spec, p = self.spec, self.protocol
        ds = Dataset()
        ds.file_meta = file_meta(spec.sop_class, spec.source_ae)
        common_header(
            ds,
            patient=patient,
            study=study,
            series=self.series,
            sop_class=spec.sop_class,
            series_description=p.description,
            protocol_name=p.protocol_name,
            body_part=spec.body_part,
            model=spec.model,
            scanner=spec.scanner,
        )
        spec.image_module(ds, p, self.anatomy, self.series, self.size)
        image_plane_module(ds, thickness_mm=p.thickness_mm, step_mm=p.step_mm)
        image_pixel_module(ds, self.size, self.phantom.spacing_mm)
        return ds

    def pixels(self, instance_number: int) -> np.ndarray:
        """Stored (uint16, little endian) pixels of slice ``instance_number`` (1-based)."""
        return self.phantom.pixels((instance_number - 1) * self.protocol.step_mm)

    def slice_values(self, instance_number: int) -> dict[str, str | list[str]]:
        """Header values that change from slice to slice."""
        spec, series = self.spec, self.series
        k = instance_number - 1
        z = self.anatomy.z0_mm + spec.z_direction * (k * self.protocol.step_mm)
        origin = -(self.size - 1) / 2.0 * self.phantom.spacing_mm
        acq = series.time_s + spec.slice_time_s(k, series.n_slices)
        return {
            "SOPInstanceUID": uid(series.uid, instance_number),
            "AcquisitionTime": fmt_tm(acq),
            "ContentTime": fmt_tm(acq + spec.content_delay_s),
            "InstanceNumber": str(instance_number),
            "ImagePositionPatient": [fmt_ds(origin), fmt_ds(origin + spec.y_shift_mm), fmt_ds(z)],
            "SliceLocation": fmt_ds(z),
        }

    def render(self, instance_number: int) -> bytes:
        """Full DICOM Part-10 bytes of slice ``instance_number`` (1-based)."""
        values = self.slice_values(instance_number)
        return self.encoder.encode(values, self.pixels(instance_number).tobytes())

    def render_reference(self, instance_number: int) -> bytes:
        """Same as :meth:`render` but through pydicom's writer (slow; for tests)."""
        values = self.slice_values(instance_number)
        return self.encoder.encode_reference(values, self.pixels(instance_number).tobytes())


# ---- standalone slices -----------------------------------------------------------------


def _standalone_context(
    spec: ModalitySpec[P, A],
    patient_id: str,
    study_uid: str,
    series_uid: str,
    series_number: int,
    n_slices: int,
) -> tuple[Patient, Study, Series]:
    patient = make_patient(patient_id, stable_rng(UID_NS, "patient", patient_id))
    srng = stable_rng(UID_NS, "study", study_uid)
    day = date(2016, 1, 1) + timedelta(days=int(srng.integers(0, 3000)))
    study = spec.make_study(study_uid=study_uid, rng=srng, patient=patient, day=day)
    series = Series(
        uid=series_uid,
        number=series_number,
        protocol_index=series_number - 1,
        time_s=study.time_s + 120.0 * series_number,
        n_slices=n_slices,
        irradiation_uid=uid(series_uid, "irradiation"),
    )
    return patient, study, series


def make_slice(
    spec: ModalitySpec[P, A],
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    rng: np.random.Generator,
    size: int,
    series_number: int = 1,
) -> bytes:
    """Return the DICOM Part-10 bytes of one synthetic slice of ``spec``'s modality.

    Header fields not given here (name, dates, ...) derive deterministically
    from ``patient_id`` / ``study_uid``; body shape and noise come from ``rng``.
    ``series_number`` picks the protocol (1 = ``spec.protocols[0]``, cycling).
    The phantom is rebuilt on each call; a :class:`SeriesRenderer` reuses it
    across a series.
    """
    if instance_number < 1:
        raise ValueError(f"instance_number is 1-based, got {instance_number}")
    patient, study, series = _standalone_context(
        spec, patient_id, study_uid, series_uid, series_number, instance_number
    )
    renderer = SeriesRenderer(
        spec,
        patient=patient,
        study=study,
        series=series,
        anatomy=spec.draw_anatomy(rng),
        rng=rng,
        size=size,
    )
    return renderer.render(instance_number)


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

    ``series_number`` picks the reconstruction protocol (1 = 2.5 mm STANDARD,
    2 = 1.25 mm LUNG, 3 = 5 mm SOFT, then cycling); see :func:`make_slice`.

    >>> import io, numpy as np, pydicom
    >>> raw = make_ct_slice(patient_id="PAT-0000", study_uid="1.2.3", series_uid="1.2.3.4",
    ...                     instance_number=1, rng=np.random.default_rng(0), size=64)
    >>> raw[128:132], pydicom.dcmread(io.BytesIO(raw)).pixel_array.shape
    (b'DICM', (64, 64))
    """
    return make_slice(
        CT,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        instance_number=instance_number,
        rng=rng,
        size=size,
        series_number=series_number,
    )


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
    then cycling); see :func:`make_slice`.

    >>> import io, numpy as np, pydicom
    >>> raw = make_mr_slice(patient_id="PAT-0000", study_uid="1.2.3", series_uid="1.2.3.5",
    ...                     instance_number=3, rng=np.random.default_rng(0), size=32)
    >>> ds = pydicom.dcmread(io.BytesIO(raw))
    >>> ds.Modality, int(ds.InstanceNumber), ds.pixel_array.dtype.name
    ('MR', 3, 'uint16')
    """
    return make_slice(
        MR,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        instance_number=instance_number,
        rng=rng,
        size=size,
        series_number=series_number,
    )
