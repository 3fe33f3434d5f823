"""Probe for the ``dicom_patient`` layout: stored bytes and encode speed by JPEG XL effort.

Not part of the test suite. For each effort (default 1, 2, 3, 5, 7) it builds
``dicom_patient`` packs with :func:`iac_spark.packing.dicom_patient.build_patient_pack`
(``workers=1``: per-core figures) and compares them, in the same run, with zstd level 3 of
the original member bytes (what a ``dicom_p10`` record stores) and with the zips.

Two inputs:

* **real** - pydicom's bundled CT / MR test files whose pixels pydicom decodes here and the
  layout holds, one per distinct image (``MR_small_*`` re-encodings of one image count once,
  images marked as lossy-compressed are left out), plus those of ``--extra`` folders;
  one pack per file. These files are tiny (a 64 KiB pack header dwarfs them), so the pack
  figure is the *data segment* (templates + deltas + pixels); the pixel figure compares the
  JPEG XL records with zstd-3 of the decoded pixel bytes.
* **corpus** - ``iac_spark.testing.corpus`` with ``CorpusSpec(patients=2, ct_slices=40,
  mr_slices=20, ct_size=512, mr_size=256)`` (``--corpus ct``: 60 CT slices, no MR, like
  ``bench/build.py``'s corpus), one pack per patient (cached under ``bench_out/``).

Speeds are MB of original DICOM bytes (or pixel bytes) per CPU-second of this process, so that
other load on a shared machine does not distort them; wall-clock MB/s is printed beside.
Each figure is the median of ``--runs`` runs (default 1).

    .venv/bin/python bench/layouts_probe.py [--efforts 1,2,3,5,7] [--runs 3] [--out bench_out]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import zstandard
from iatro.iac import Codec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from iac_spark.packing.dicom_patient import (  # noqa: E402
    PatientMember,
    build_patient_pack,
)
from iac_spark.testing.corpus import CorpusSpec, generate_corpus  # noqa: E402

MB = 1e6
SPECS = {
    # the probe's corpus: CT 512x512 and MR 256x256 per patient
    "mixed": CorpusSpec(patients=2, ct_slices=40, mr_slices=20, ct_size=512, mr_size=256),
    # bench/build.py's kind of corpus (CT only), at a small size
    "ct": CorpusSpec(patients=2, ct_slices=60, mr_slices=0, ct_size=512),
}


@dataclass
class Input:
    name: str
    patients: list[list[PatientMember]]  # one pack per inner list
    zip_bytes: int | None
    pixels: list[np.ndarray]  # pydicom's pixel_array of every member

    @property
    def raw_bytes(self) -> int:
        return sum(m.size for p in self.patients for m in p)

    @property
    def pixel_bytes(self) -> int:
        return sum(a.nbytes for a in self.pixels)


def _member(path: str, member: str | None, data: bytes) -> PatientMember:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return PatientMember(path, member, data, str(ds.SOPInstanceUID), len(data), zlib.crc32(data))


def real_input(extra: list[Path]) -> Input:
    """pydicom's bundled CT/MR files (and ``extra`` folders') that decode here and that the
    layout holds, one per distinct image (an uncompressed copy preferred)."""
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    paths = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    for d in extra:
        paths += sorted(glob.glob(os.path.join(d, "**", "*.dcm"), recursive=True))
    found: dict[tuple[object, ...], tuple[bool, str, bytes, np.ndarray]] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
            ds = pydicom.dcmread(io.BytesIO(data))
            if ds.get("Modality") not in ("CT", "MR") or "PixelData" not in ds:
                continue
            if ds.get("LossyImageCompression") == "01":  # pixels with lossy artefacts
                continue
            arr = ds.pixel_array
            compressed = ds.file_meta.TransferSyntaxUID.is_compressed
        except Exception:
            continue
        key = (arr.shape, zlib.crc32(np.ascontiguousarray(arr).tobytes()))
        if key not in found or (found[key][0] and not compressed):
            found[key] = (compressed, path, data, arr)
    patients, pixels = [], []
    for _, path, data, arr in found.values():
        member = _member(path, None, data)
        with tempfile.TemporaryDirectory() as tmp:  # keep only what the layout holds
            if build_patient_pack(os.path.join(tmp, "p.iac"), [member], jxl_effort=1).rejected:
                continue
        patients.append([member])
        pixels.append(arr)
    return Input("real", patients, None, pixels)


def corpus_input(out: Path, kind: str) -> Input:
    spec = SPECS[kind]
    root = out / ("layouts-probe-corpus" if kind == "mixed" else f"layouts-probe-corpus-{kind}")
    zips = sorted(root.glob("*.zip"))
    if len(zips) != spec.patients:
        print(f"generating {spec} under {root} ...", flush=True)
        zips = list(generate_corpus(root, spec).zips)
    patients, pixels = [], []
    for z in zips:
        members = []
        with zipfile.ZipFile(z) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".dcm"):
                    data = zf.read(info)
                    members.append(_member(str(z), info.filename, data))
                    pixels.append(pydicom.dcmread(io.BytesIO(data)).pixel_array)
        patients.append(members)
    return Input(f"corpus ({kind})", patients, sum(os.path.getsize(z) for z in zips), pixels)


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(CPU seconds, wall seconds, result)."""
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - c0, time.perf_counter() - w0, result


def median_of(runs: int, fn: Callable[[], object]) -> tuple[float, float, object]:
    results = [timed(fn) for _ in range(runs)]
    return (
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        results[-1][2],
    )


def probe(inp: Input, efforts: list[int], runs: int) -> None:
    raw, px = inp.raw_bytes, inp.pixel_bytes
    members = [m for p in inp.patients for m in p]
    zstd = zstandard.ZstdCompressor(level=3)
    z_cpu, _z_wall, z_out = median_of(
        runs, lambda: sum(len(zstd.compress(m.read())) for m in members)
    )
    zpx = sum(len(zstd.compress(np.ascontiguousarray(a).tobytes())) for a in inp.pixels)
    assert isinstance(z_out, int)
    print(
        f"\n## {inp.name}: {len(members)} instances in {len(inp.patients)} pack(s), "
        f"{raw / MB:.2f} MB DICOM, {px / MB:.2f} MB pixels"
        + (f", {inp.zip_bytes / MB:.2f} MB zips" if inp.zip_bytes else "")
    )
    ref = f"zstd-3 of the members: {z_out:,} B ({raw / z_out:.2f}x), {raw / MB / z_cpu:.0f} MB/s"
    print(ref + f" per CPU-s; zstd-3 of the pixel bytes: {zpx:,} B ({px / zpx:.2f}x)")
    if inp.name == "real":
        print(
            "files: "
            + ", ".join(
                f"{os.path.basename(p[0].source_path)} {a.dtype}{a.shape}"
                for p, a in zip(inp.patients, inp.pixels, strict=True)
            )
        )
    head = (
        f"{'effort':>6} | {'pixels B':>11} | {'px/zstd':>7} | {'data B':>11} | {'file B':>11} | "
        f"{'data/zstd':>9} | {'file/zip':>8} | {'build MB/s':>10} | {'px MB/s':>8} | "
        f"{'wall':>6} | {'jxl px MB/s':>11}"
    )
    print(head + "\n" + "-" * len(head))
    for effort in efforts:
        jxl = Codec.create(Codec.JXL, lossless=True, effort=effort, usecontainer=True)
        views = [
            a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint8) for a in inp.pixels
        ]

        def encode(jxl: Codec = jxl, views: list[np.ndarray] = views) -> list[bytes]:
            return [jxl.encode(v) for v in views]

        j_cpu, _, _ = median_of(runs, encode)

        def build(effort: int = effort) -> tuple[int, int, int]:
            with tempfile.TemporaryDirectory() as d:
                pixels = data = files = 0
                for i, members in enumerate(inp.patients):
                    res = build_patient_pack(
                        os.path.join(d, f"p{i}.iac"), members, jxl_effort=effort, workers=1
                    )
                    assert not res.rejected, res.rejected
                    pixels += sum(x.length for x in res.instances)
                    data += res.data_bytes
                    files += res.file_bytes
                return pixels, data, files

        cpu, wall, out = median_of(runs, build)
        assert isinstance(out, tuple)
        pixels, data, files = out
        file_zip = f"{files / inp.zip_bytes:.3f}" if inp.zip_bytes else "-"
        print(
            f"{effort:>6} | {pixels:>11,} | {zpx / pixels:>6.2f}x | {data:>11,} | {files:>11,} | "
            f"{data / z_out:>9.3f} | {file_zip:>8} | {raw / MB / cpu:>10.1f} | "
            f"{px / MB / cpu:>8.1f} | {raw / MB / wall:>6.1f} | {px / MB / j_cpu:>11.1f}"
        )
    print(
        "px/zstd: zstd-3 pixel bytes / JPEG XL pixel bytes (higher is better); data/zstd: pack "
        "data segment / zstd-3 of the members; file/zip: pack files / zips; build MB/s: DICOM MB "
        "per CPU-second of build_patient_pack (workers=1), px MB/s the same in pixel MB, wall "
        "the DICOM MB per wall-second; jxl px MB/s: pixel MB per CPU-second "
        "of the JPEG XL encoder alone."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--efforts", default="1,2,3,5,7")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench_out")
    p.add_argument("--only", choices=("real", "corpus"))
    p.add_argument("--corpus", choices=sorted(SPECS), default="mixed")
    p.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="another folder of real .dcm files (e.g. the pydicom-data wheel unpacked)",
    )
    args = p.parse_args(argv)
    efforts = [int(e) for e in args.efforts.split(",")]
    warnings.simplefilter("ignore")
    print(f"python {sys.version.split()[0]}, pydicom {pydicom.__version__}, {os.cpu_count()} CPUs")
    if args.only != "corpus":
        probe(real_input(args.extra), efforts, args.runs)
    if args.only != "real":
        probe(corpus_input(args.out, args.corpus), efforts, args.runs)
    extra = "".join(f" --extra {d}" for d in args.extra)
    print(
        f"\ncommand: .venv/bin/python bench/layouts_probe.py --efforts {args.efforts} "
        f"--runs {args.runs} --corpus {args.corpus}{extra}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
