"""``dicom_patient`` builds: one patient per pack, pixels equal pydicom's, every instance accounted."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from iatro.iac.adapters.dicom import DicomPatientReader

import iac_spark.catalog as cat
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

from .helpers import write_zip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, testdata_dir: Path):
    root = tmp_path_factory.mktemp("patients")
    summary = generate_corpus(
        root, CorpusSpec(patients=3, ct_slices=5, mr_slices=3, ct_size=64, mr_size=32, seed=21)
    )
    # instances the layout cannot hold: JPEG Lossless without its pydicom plugin, and float pixels
    extra = {
        "odd/jpeg_lossless.dcm": (testdata_dir / "SC_rgb_jpeg_gdcm.dcm").read_bytes(),
    }
    write_zip(root / "ODD.zip", extra)
    return summary


def _source(path: str, member: str | None) -> bytes:
    if member is None:
        return Path(path).read_bytes()
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def _check_pixels(out: str) -> int:
    rows = cat.sql(
        out,
        "SELECT r.row, p.path, p.payload_type, r.source_path, r.source_member, r.sop_instance_uid "
        "FROM records r JOIN packs p ON r.pack_id = p.pack_id WHERE NOT r.retired",
    ).to_pylist()
    n = 0
    for r in rows:
        if r["payload_type"] != "dicom_patient":
            continue
        reader = DicomPatientReader(str(Path(out) / r["path"]))
        ds = pydicom.dcmread(io.BytesIO(_source(r["source_path"], r["source_member"])))
        assert np.array_equal(reader.read_pixel_array(r["row"]), ds.pixel_array)
        rebuilt = pydicom.dcmread(io.BytesIO(reader.read_dicom(r["row"])))
        assert rebuilt.SOPInstanceUID == ds.SOPInstanceUID == r["sop_instance_uid"]
        assert rebuilt.SeriesInstanceUID == ds.SeriesInstanceUID
        n += 1
    return n


def test_dicom_patient_packs_one_patient_each(corpus, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    r = cat.build(None, [str(corpus.root)], out, executor="local", layout="dicom_patient")
    packs = cat.open(out).packs().to_pylist()
    assert {p["payload_type"] for p in packs} == {"dicom_patient"}
    assert all(p["num_patients"] == 1 for p in packs) and len(packs) == len(corpus.patients)
    assert _check_pixels(out) == corpus.dicom_members == r.records
    errors = cat.open(out).errors().to_pylist()
    [bad] = [e for e in errors if e["source_member"] == "odd/jpeg_lossless.dcm"]
    assert bad["stage"] == "pack" and bad["error"].startswith("UnsupportedPixelDataError: ")
    assert "ODD.zip!odd/jpeg_lossless.dcm" in bad["error"]
    for s in cat.open(out).sources().to_pylist():
        assert s["members"] == s["packed"] + s["duplicates"] + s["errors"] + s["skipped"]
    # the promoted attributes are there as for dicom_p10
    got = cat.sql(
        out, "SELECT count(*) AS n FROM records WHERE rows IS NOT NULL AND meta IS NOT NULL"
    )
    assert got.to_pylist()[0]["n"] == r.records
    assert cat.verify(out, decode=True).ok


def test_fallback_packs_what_the_layout_cannot_hold_as_dicom_p10(corpus, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    cat.build(None, [str(corpus.root)], out, executor="local", layout="dicom_patient",
              fallback="dicom_p10", jxl_effort=1)  # fmt: skip
    packs = cat.open(out).packs().to_pylist()
    assert sorted({p["payload_type"] for p in packs}) == ["dicom_p10", "dicom_patient"]
    odd = cat.sql(
        out,
        "SELECT p.payload_type, r.raw_crc32 FROM records r JOIN packs p ON r.pack_id = p.pack_id "
        "WHERE r.source_member = 'odd/jpeg_lossless.dcm'",
    ).to_pylist()
    assert [o["payload_type"] for o in odd] == ["dicom_p10"]
    assert not [e for e in cat.open(out).errors().to_pylist() if e["stage"] == "pack"]
    assert cat.verify(out, decode=True).ok


def test_verify_catches_a_flipped_byte_in_a_patient_pack(corpus, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    cat.build(None, [str(corpus.root)], out, executor="local", layout="dicom_patient")
    pack = cat.open(out).packs().to_pylist()[0]
    path = Path(out) / pack["path"]
    copy = tmp_path / "copy.iac"
    shutil.copy(path, copy)
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0xFF  # inside the data segment (pixels)
    path.write_bytes(bytes(raw))
    report = cat.verify(out)
    assert not report.ok and all(pack["path"] in p for p in report.problems)


@pytest.mark.spark
def test_spark_executor_builds_the_same_patient_packs(spark, corpus, tmp_path: Path) -> None:
    outs = {e: str(tmp_path / e) for e in ("local", "spark")}
    for e, out in outs.items():
        cat.build(spark if e == "spark" else None, [str(corpus.root)], out, executor=e,
                  layout="dicom_patient")  # fmt: skip

    def records(out: str) -> list[tuple]:
        return sorted(
            (r["sop_instance_uid"], r["raw_crc32"], r["length"] > 0)
            for r in cat.open(out).records().to_pylist()
        )

    assert records(outs["local"]) == records(outs["spark"])
    assert _check_pixels(outs["spark"]) == corpus.dicom_members


def test_record_dataset_reads_patient_packs(corpus, tmp_path: Path) -> None:
    from iac_spark.data import RecordDataset

    out = str(tmp_path / "out")
    cat.build(None, [str(corpus.root)], out, executor="local", layout="dicom_patient")
    ds = RecordDataset(out, "SELECT pack_id, row, sop_instance_uid, source_path, source_member "
                       "FROM records WHERE modality = 'CT'", decode="pixels")  # fmt: skip
    assert len(ds) > 0
    for i in range(len(ds)):
        s = ds[i]
        ref = pydicom.dcmread(io.BytesIO(_source(s["source_path"], s["source_member"])))
        assert np.array_equal(s["pixels"], ref.pixel_array)
    sample = RecordDataset(out, decode="dataset")[0]
    d = sample["dataset"]  # rebuilt by the reader: JPEG XL Lossless, which pydicom 3.0 can't decode
    assert d.SOPInstanceUID == sample["sop_instance_uid"]
    assert d.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.110"
