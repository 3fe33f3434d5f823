"""Memory and progress of a build (issue 11, item 7).

* Peak RSS of a local-executor build, measured in a subprocess (``ru_maxrss``): a corpus about
  ten times the shard size holding one 100 MB member costs about one to two times that member
  more than the same build without it — the pack task holds one member's raw and encoded bytes,
  whatever the shard or pack size (docs/packs.md "Memory").
* Progress moves within one long pack task: the task reports bytes per record through its
  meter file, the driver's watcher turns them into lines (``pack: tasks 0/1, 1.2 MB of ...``).
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import iac_spark.packing.build as build_module
from iac_spark.inputs import discover, survey
from iac_spark.packing import LocalExecutor, run_build
from iac_spark.packing.build import DICOM
from iac_spark.packing.task import PackTaskSpec, PatientRecords, dicom_members

MB = 1024**2
SHARD = 16 * MB


def dicom(
    patient: str, study: str, series: str, rows: int, cols: int, frames: int, seed: int
) -> bytes:
    """A Part-10 CT instance whose pixels compress about 2:1 (12-bit noise), like scanner data."""
    rng = np.random.default_rng(seed)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[patient, str(seed)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = (
        patient,
        study,
        series,
        "CT",
    )
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    pixels = rng.integers(0, 64, size=rows * cols * frames, dtype=np.uint16) + 1000
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``small.zip``: 120 instances of 0.5 MB (4 patients); ``big.zip``: one 100 MB instance."""
    root = tmp_path_factory.mktemp("memory")
    big = dicom(
        "BIG", generate_uid(entropy_srcs=["s"]), generate_uid(entropy_srcs=["e"]), 1024, 1024, 50, 0
    )
    with zipfile.ZipFile(root / "big.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("BIG/big.dcm", big)
    study, series = generate_uid(entropy_srcs=["st"]), generate_uid(entropy_srcs=["se"])
    small = 0
    with zipfile.ZipFile(root / "small.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(120):
            data = dicom(f"P{i // 30}", study, series, 512, 512, 1, i + 1)
            small += len(data)
            zf.writestr(f"S/{i:04d}.dcm", data)
    return {"root": root, "big": len(big), "total": len(big) + small}


_MEASURE = r"""
import resource, sys
import iac_spark.catalog as cat
out, shard, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
r = cat.build(None, sources, out, dataset="m", executor="local", shard_target_bytes=shard,
              pack_target_bytes=4 * shard)
print(r.records, r.new_packs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss(out: Path, sources: list[Path], shard: int = SHARD) -> tuple[int, int, int]:
    """(records, packs, peak RSS in bytes) of a local catalog build in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(out), str(shard), *map(str, sources)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records, packs, peak = (int(x) for x in done.stdout.split())
    return records, packs, peak


def test_peak_rss_is_bounded_by_the_largest_member_not_the_corpus(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    root: Path = corpus["root"]
    assert corpus["total"] >= 10 * SHARD and corpus["big"] >= 100 * MB
    n, _, without = peak_rss(tmp_path / "a", [root / "small.zip"])
    assert n == 120
    n, packs, with_big = peak_rss(tmp_path / "b", [root / "small.zip", root / "big.zip"])
    assert n == 121 and packs >= 2
    extra = with_big - without
    # docs/packs.md "Memory": a task holds one member's raw bytes and its encoded copy
    assert extra < 2 * corpus["big"], (
        f"+{extra / MB:.0f} MB for a {corpus['big'] / MB:.0f} MB member"
    )
    assert with_big < 1024 * MB, f"peak {with_big / MB:.0f} MB"


def slow_members(rows: pa.Table, spec: PackTaskSpec) -> Iterator[PatientRecords]:
    """``dicom_members``, a little slow per record: a long task in a short test."""
    for planned, items in dicom_members(rows, spec):

        def slow(items: Iterator[Any] = items) -> Iterator[Any]:
            for item in items:
                time.sleep(0.03)
                yield item

        yield planned, slow()


def test_progress_moves_within_one_long_pack_task(
    corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(build_module, "PROGRESS_SECONDS", 0.1)
    kind = dataclasses.replace(DICOM, sources={"dicom_p10": slow_members})
    lines: list[str] = []
    result = run_build(
        survey(discover([str(corpus["root"] / "small.zip")])), str(tmp_path / "out"),
        executor=LocalExecutor(1), kind=kind, num_tasks=1, progress=lines.append,
    )  # fmt: skip
    assert result.num_records == 120
    pack = [ln for ln in lines if ln.startswith("pack: ")]
    within = [ln for ln in pack if ln.startswith("pack: tasks 0/1, ")]
    moved = [ln.split(", ")[1] for ln in within]
    assert len(set(moved)) >= 3, pack  # bytes moved several times before the task ended
    assert "0 B of" not in moved[-1]
    done, planned = pack[-1].split(", ")[1].split(" of ")
    assert pack[-1].startswith("pack: tasks 1/1, ") and done == planned, pack[-1]
