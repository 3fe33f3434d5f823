"""Pixel phantoms of the synthetic corpus: smooth anatomy plus mild noise (numpy only).

Real CT and MR slices compress a few times because they are mostly smooth
regions with noise on top; random bytes do not compress at all and flat
images compress absurdly well.  The phantoms here paint axis-aligned ellipses
whose sizes follow the slice position through the body, then add noise from
two cached fields at per-slice offsets.

* :class:`ChestAnatomy` / :class:`ChestPhantom` - an axial CT chest in stored
  values (HU + 1024, 12 bits): air, table, fat, muscle, lungs, heart, liver,
  spine and aorta, 0 outside the reconstruction circle;
* :class:`HeadAnatomy` / :class:`HeadPhantom` - an axial MR brain magnitude
  image: scalp, skull, CSF, grey / white matter, ventricles and orbits, times a
  receive-coil bias field.

An anatomy is the body of one study (drawn once); a phantom is one series of
it (grid and noise precomputed), and :meth:`Phantom.pixels` renders one slice
at a distance from the series' first slice.  Everything random comes from the
``numpy.random.Generator`` handed in, so a seeded generator always gives the
same pixels.

Example
-------
>>> import numpy as np
>>> from iac_spark.testing.phantom import ChestAnatomy, ChestPhantom
>>> rng = np.random.default_rng(0)
>>> chest = ChestPhantom(ChestAnatomy.draw(rng), 64, noise_hu=5.0, rng=rng)
>>> img = chest.pixels(100.0)
>>> img.shape, img.dtype.str, 0 <= int(img.min()) < int(img.max()) <= 4095
((64, 64), '<u2', True)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "CHEST_EXTENT_MM",
    "HEAD_EXTENT_MM",
    "Anatomy",
    "ChestAnatomy",
    "ChestPhantom",
    "HeadAnatomy",
    "HeadPhantom",
    "Phantom",
    "stable_rng",
]

CHEST_EXTENT_MM = 320.0  # cranio-caudal extent covered by the chest phantom
HEAD_EXTENT_MM = 150.0  # skull base to vertex
_NOISE_PAD = 96  # noise fields are (size + pad)^2 and sliced at per-slice offsets


class Anatomy(Protocol):
    """The body of one study, as the series renderer sees it."""

    @property
    def fov_mm(self) -> float:
        """Reconstruction field of view (square), in mm."""
        ...

    @property
    def z0_mm(self) -> float:
        """Patient z (``ImagePositionPatient[2]``) of the first slice, in mm."""
        ...


class Phantom(Protocol):
    """One series' pixel source: a fixed grid, one image per slice."""

    @property
    def spacing_mm(self) -> float:
        """Pixel spacing (rows and columns), in mm."""
        ...

    def pixels(self, offset_mm: float) -> np.ndarray:
        """Stored ``<u2`` pixels of the slice ``offset_mm`` past the series' first slice."""
        ...


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by the text of ``parts`` (same parts, same stream, any process).

    >>> int(stable_rng("a", 1).integers(1000)) == int(stable_rng("a", 1).integers(1000))
    True
    """
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


# ---- geometry and noise ----------------------------------------------------------------

_Op = tuple[slice, slice, np.ndarray]


def _triangle(x: float) -> float:
    """Triangle wave in [0, 1] with period 2, so long series keep varying."""
    u = x % 2.0
    return u if u <= 1.0 else 2.0 - u


def _bump(t: float, lo: float, hi: float) -> float:
    """Smooth 0 -> 1 -> 0 bump over [lo, hi]."""
    if t <= lo or t >= hi:
        return 0.0
    return float(np.sin(np.pi * (t - lo) / (hi - lo)) ** 0.5)


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


# ---- CT chest --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChestAnatomy:
    """One patient's chest on the CT table (mm)."""

    fov_mm: float
    body_a_mm: float  # half width (left-right)
    body_b_mm: float  # half depth (antero-posterior)
    fat_mm: float
    offset_y_mm: float
    d0_mm: float  # anatomy coordinate of the first slice (0 = lung apex)
    z0_mm: float  # patient z of the first slice (slices then go feet-wards)
    table_height_mm: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ChestAnatomy:
        """Draw a plausible adult chest (8 uniform draws, in field order)."""
        return cls(
            fov_mm=float(rng.uniform(340.0, 420.0)),
            body_a_mm=float(rng.uniform(135.0, 170.0)),
            body_b_mm=float(rng.uniform(95.0, 120.0)),
            fat_mm=float(rng.uniform(8.0, 22.0)),
            offset_y_mm=float(rng.uniform(-12.0, 4.0)),
            d0_mm=float(rng.uniform(0.0, 60.0)),
            z0_mm=float(rng.uniform(-80.0, 40.0)),
            table_height_mm=float(rng.uniform(140.0, 190.0)),
        )


class ChestPhantom:
    """Axial CT chest slices: body precomputed once, organs follow the slice position.

    ``noise_hu`` is the standard deviation of the added noise (HU); the
    constructor draws the two noise fields from ``rng`` and every
    :meth:`pixels` call draws four offsets from it.
    """

    def __init__(
        self, anatomy: ChestAnatomy, size: int, *, noise_hu: float, rng: np.random.Generator
    ) -> None:
        self.anatomy = anatomy
        self.size = size
        self.rng = rng
        self.spacing_mm = spacing = anatomy.fov_mm / size
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
        self.noise = _noise_fields(rng, size, noise_hu, np.int16)

    def pixels(self, offset_mm: float) -> np.ndarray:
        """Stored (``<u2``, HU + 1024) pixels ``offset_mm`` below the first slice."""
        size, a, b, cy, cx = self.size, self.a, self.b, self.cy, self.cx
        d_mm = self.anatomy.d0_mm + offset_mm
        t = _triangle(d_mm / CHEST_EXTENT_MM)  # 0 = apex of the lungs, 1 = upper abdomen
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


# ---- MR head ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadAnatomy:
    """One patient's head in the MR coil (mm)."""

    fov_mm: float
    head_a_mm: float  # half width
    head_b_mm: float  # half depth
    d0_mm: float  # anatomy coordinate of the first slice (0 = skull base)
    z0_mm: float  # patient z of the first slice (slices then go head-wards)
    ventricle_mm: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> HeadAnatomy:
        """Draw a plausible adult head (6 uniform draws, in field order)."""
        return cls(
            fov_mm=float(rng.uniform(220.0, 250.0)),
            head_a_mm=float(rng.uniform(68.0, 78.0)),
            head_b_mm=float(rng.uniform(86.0, 98.0)),
            d0_mm=float(rng.uniform(10.0, 40.0)),
            z0_mm=float(rng.uniform(-60.0, -20.0)),
            ventricle_mm=float(rng.uniform(5.0, 10.0)),
        )


class HeadPhantom:
    """Axial MR brain slices: bias field and noise precomputed per series.

    ``contrast`` is the signal of scalp fat, skull, CSF, grey matter and white
    matter; ``noise`` the standard deviation of the added noise.  The
    constructor draws the bias tilt and the noise fields from ``rng``; every
    :meth:`pixels` call draws four offsets from it.
    """

    def __init__(
        self,
        anatomy: HeadAnatomy,
        size: int,
        *,
        contrast: tuple[float, float, float, float, float],
        noise: float,
        rng: np.random.Generator,
    ) -> None:
        self.anatomy = anatomy
        self.size = size
        self.contrast = contrast
        self.rng = rng
        self.spacing_mm = anatomy.fov_mm / size
        c = (size - 1) / 2.0
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        # receive-coil bias field: smooth, brighter towards the posterior / one side
        tilt = float(rng.uniform(-0.08, 0.08))
        self.bias = (
            1.0
            + 0.10 * np.cos((yy - 0.8 * size) / (0.7 * size)) * np.cos((xx - c) / (0.9 * size))
            + tilt * (xx - c) / size
        ).astype(np.float32)
        self.noise = _noise_fields(rng, size, noise, np.float32)

    def pixels(self, offset_mm: float) -> np.ndarray:
        """Stored (``<u2``) magnitude pixels ``offset_mm`` above the first slice."""
        size, an = self.size, self.anatomy
        px = 1.0 / self.spacing_mm
        d_mm = an.d0_mm + offset_mm
        t = _triangle(d_mm / HEAD_EXTENT_MM)  # 0 = skull base, 1 = vertex
        g = float(np.sqrt(max(1.0 - max(t - 0.35, 0.0) ** 2 / 0.72**2, 0.0)))
        g = max(g, 0.18) * (0.9 + 0.1 * min(t / 0.35, 1.0))
        c = (size - 1) / 2.0
        cy, cx = c + 4.0 * px, c
        a, b = an.head_a_mm * px * g, an.head_b_mm * px * g
        fat, skull, csf, gm, wm = self.contrast
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
