"""Promoted DICOM attributes in ``records`` and the ``series`` / ``studies`` views (issue 9).

The truth is pydicom's reading of each source member. Catalogs are built with the local
executor (no JVM); only the Spark SQL test starts Spark, to run the same view SQL there.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
import shutil
import statistics
import warnings
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pydicom
import pytest

import iac_spark.catalog as cat
from iac_spark.catalog.schema import ATTRIBUTE_COLUMNS, RECORDS_SCHEMA
from iac_spark.catalog.views import POSITION_GAP_FACTOR, SPARK_FUNCTIONS
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

KEYWORDS = {
    "sop_instance_uid": "SOPInstanceUID", "series_instance_uid": "SeriesInstanceUID",
    "study_instance_uid": "StudyInstanceUID", "patient_id": "PatientID",
    "sop_class_uid": "SOPClassUID",
}  # fmt: skip
KINDS = {
    "study_date": "date", "series_number": "int", "instance_number": "int", "rows": "int",
    "columns": "int", "number_of_frames": "int", "bits_allocated": "int",
    "slice_thickness": "float", "spacing_between_slices": "float", "pixel_spacing": "floats",
    "image_position_patient": "floats", "image_orientation_patient": "floats",
    "image_type": "strs",
}  # fmt: skip
MISSING = object()


def keyword(column: str) -> str:
    return KEYWORDS.get(column) or "".join(w.capitalize() for w in column.split("_"))


def member_bytes(source_path: str, member: str | None) -> bytes:
    if member is None:
        return Path(source_path).read_bytes()
    with zipfile.ZipFile(source_path) as zf:
        return zf.read(member)


def pydicom_value(ds: pydicom.Dataset, column: str) -> Any:
    """What pydicom says the column should hold (MISSING when absent or not parseable)."""
    if column == "transfer_syntax_uid":
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        return str(ts) if ts else MISSING
    kw = keyword(column)
    if kw not in ds or ds[kw].value in (None, "", b""):
        return MISSING
    value, kind = ds[kw].value, KINDS.get(column, "str")
    seq = list(value) if isinstance(value, pydicom.multival.MultiValue | list) else [value]
    try:
        if kind == "date":
            return dt.datetime.strptime(str(value), "%Y%m%d").date()
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "floats":
            return [float(x) for x in seq]
        if kind == "strs":
            return [str(x).strip() for x in seq]
        return str(value).strip()
    except (TypeError, ValueError):
        return MISSING  # pydicom keeps an invalid value as text; the column is null then


def same(got: Any, want: Any, column: str) -> bool:
    kind = KINDS.get(column, "str")
    if kind == "float":
        return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if kind == "floats":
        return (
            got is not None
            and len(got) == len(want)
            and all(
                math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                for a, b in zip(got, want, strict=True)
            )
        )
    if kind == "strs":
        return got is not None and [x.strip() for x in got] == want
    if kind == "str":
        return isinstance(got, str) and got.strip() == want
    return type(got) is type(want) and got == want


def compare_with_pydicom(out: Path) -> tuple[int, Counter[str], dict[str, Any]]:
    """Every live record's promoted columns against pydicom: (records, mismatches, examples)."""
    records = cat.sql(str(out), "SELECT * FROM records WHERE NOT retired").to_pylist()
    bad: Counter[str] = Counter()
    examples: dict[str, Any] = {}
    columns = [c for c in ATTRIBUTE_COLUMNS if c != "meta"] + [
        "sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_id",
        "modality", "instance_number",
    ]  # fmt: skip
    for r in records:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(
                io.BytesIO(member_bytes(r["source_path"], r["source_member"])), force=True
            )
        for c in columns:
            want = pydicom_value(ds, c)
            if want is MISSING:
                continue
            if not same(r[c], want, c):
                bad[c] += 1
                examples.setdefault(c, (Path(r["source_path"]).name, r[c], want))
    return len(records), bad, examples


def rewrite_zip(
    path: Path, *, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None
) -> None:
    """Rewrite a zip without the members ending in ``drop``, with ``replace`` members swapped."""
    replace = replace or {}
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if name.endswith(drop):
                continue
            zf.writestr(name, replace.get(name, data))


def edited(data: bytes, **attrs: Any) -> bytes:
    """The DICOM file ``data`` with ``attrs`` set (``None`` deletes the attribute)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for name, value in attrs.items():
        if value is None:
            if name in ds:
                delattr(ds, name)
        else:
            setattr(ds, name, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def member_names(path: Path, *, contains: str) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return sorted(n for n in zf.namelist() if contains in n and n.endswith(".dcm"))


def by_key(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in rows}


# --------------------------------------------------------------------------------------
# fixtures: one corpus with a gap, an oblique series and a series without orientation
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def views_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Patients 0 and 1 (CT 6 slices, MR 4); patient 1's CT lacks its 3rd slice (a gap);
    patient 2's zip holds a sagittal CT series (positions along x, constant z) and an MR series
    whose instances have no ImageOrientationPatient (fallback: z)."""
    root = tmp_path_factory.mktemp("views")
    src = root / "src"
    generate_corpus(src, CorpusSpec(patients=3, ct_slices=6, mr_slices=4, ct_size=16, mr_size=16, seed=11))  # fmt: skip
    gap_zip = src / "PAT-0001.zip"
    gap_member = member_names(gap_zip, contains="AX_CHEST")[2]
    rewrite_zip(gap_zip, drop=(gap_member,))
    odd_zip = src / "PAT-0002.zip"
    replace = {}
    with zipfile.ZipFile(odd_zip) as zf:
        for k, name in enumerate(member_names(odd_zip, contains="AX_CHEST")):
            x = 10.0 + 3.0 * k  # sagittal: the normal is -x, slices 3 mm apart, z constant
            replace[name] = edited(
                zf.read(name), ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                ImagePositionPatient=[x, -100.0, 50.0],
            )  # fmt: skip
        for name in member_names(odd_zip, contains="AX_T1"):
            replace[name] = edited(zf.read(name), ImageOrientationPatient=None)
    rewrite_zip(odd_zip, replace=replace)
    out = root / "out"
    cat.build(None, [str(src)], str(out), executor="local")
    return {"src": src, "out": out, "gap_member": gap_member}


def series_truth(out: Path) -> dict[str, dict[str, Any]]:
    """Per series, the aggregates recomputed in Python from the live records."""
    recs = cat.sql(str(out), "SELECT * FROM records WHERE NOT retired").to_pylist()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[r["series_instance_uid"]].append(r)
    truth = {}
    for uid, rs in groups.items():
        positions = []
        for r in rs:
            p, o = r["image_position_patient"], r["image_orientation_patient"]
            if o is not None and len(o) == 6:
                n = (
                    o[1] * o[5] - o[2] * o[4],
                    o[2] * o[3] - o[0] * o[5],
                    o[0] * o[4] - o[1] * o[3],
                )
                norm = math.sqrt(sum(c * c for c in n))
                positions.append(sum(a * b for a, b in zip(p, n, strict=True)) / norm)
            else:
                positions.append(p[2])
        distinct = sorted({round(x, 3) for x in positions})
        steps = [b - a for a, b in itertools.pairwise(distinct)]
        numbers = sorted({r["instance_number"] for r in rs})
        truth[uid] = {
            "num_instances": len(rs),
            "slice_step": statistics.median(steps) if steps else None,
            "z_extent": max(positions) - min(positions),
            "has_instance_gap": numbers[-1] - numbers[0] + 1 > len(numbers),
            "has_position_gap": bool(steps) and max(steps) > POSITION_GAP_FACTOR * statistics.median(steps) + 0.001,
            "raw_bytes": sum(r["raw_length"] for r in rs),
            "pack_ids": sorted({r["pack_id"] for r in rs}),
            "rows": min(r["rows"] for r in rs),
            "slice_thickness": min(r["slice_thickness"] for r in rs),
            "patient_id": rs[0]["patient_id"],
            "modality": rs[0]["modality"],
        }  # fmt: skip
    return truth


# --------------------------------------------------------------------------------------
# records: promoted attributes
# --------------------------------------------------------------------------------------


def test_records_schema_has_the_promoted_columns() -> None:
    names = RECORDS_SCHEMA.names
    for c in ("study_date", "pixel_spacing", "image_orientation_patient", "image_type", "meta"):
        assert c in names and c in ATTRIBUTE_COLUMNS
    assert str(RECORDS_SCHEMA.field("study_date").type) == "date32[day]"
    assert str(RECORDS_SCHEMA.field("image_type").type) == "list<item: string>"


def test_promoted_values_equal_pydicom_on_the_generated_corpus(
    views_catalog: dict[str, Any],
) -> None:
    n, bad, examples = compare_with_pydicom(views_catalog["out"])
    assert n == 3 * (6 + 4) - 1
    assert not bad, examples


def test_promoted_values_equal_pydicom_on_pydicoms_files(
    testdata_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("*.gz", "*.json", "*.dump", "*.py", "__pycache__")
    shutil.copytree(testdata_dir, src / "test_files", ignore=skip)
    shutil.copytree(testdata_dir.parent / "charset_files", src / "charset_files", ignore=skip)
    cat.build(None, [str(src)], str(tmp_path / "out"), executor="local")
    n, bad, examples = compare_with_pydicom(tmp_path / "out")
    assert n > 150
    # not compared (pydicom_value gives MISSING): values pydicom keeps as unparsed text, e.g.
    # badVR.dcm's NumberOfFrames "1A" (null in the catalog) and ExplVR_BigEnd.dcm's ACR-NEMA
    # StudyDate "1997.04.24" (the catalog reads it as 1997-04-24, as pydicom's DA does)
    assert not bad, examples


def test_meta_is_dicom_json_of_the_header(views_catalog: dict[str, Any]) -> None:
    import json

    rows = cat.sql(
        str(views_catalog["out"]),
        "SELECT series_instance_uid, modality, meta FROM records WHERE NOT retired",
    ).to_pylist()
    for r in rows:
        meta = json.loads(r["meta"])
        assert meta["0020000E"]["Value"] == [r["series_instance_uid"]]
        assert meta["00080060"]["Value"] == [r["modality"]]
        assert "7FE00010" not in meta  # bulk data left out


# --------------------------------------------------------------------------------------
# series / studies
# --------------------------------------------------------------------------------------


def test_series_view_matches_the_records(views_catalog: dict[str, Any]) -> None:
    out = views_catalog["out"]
    got = by_key(cat.sql(str(out), "SELECT * FROM series").to_pylist(), "series_instance_uid")
    truth = series_truth(out)
    assert set(got) == set(truth) and len(got) == 6
    for uid, want in truth.items():
        row = got[uid]
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, abs=1e-6), (uid, key)
            else:
                assert row[key] == value, (uid, key, row[key], value)
    assert list(got[next(iter(got))]) == [
        "series_instance_uid", "study_instance_uid", "patient_id", "modality",
        "series_description", "body_part_examined", "num_instances", "rows", "columns",
        "slice_thickness", "slice_step", "z_extent", "has_instance_gap", "has_position_gap",
        "raw_bytes", "pack_ids",
    ]  # fmt: skip


def test_series_with_a_missing_slice_has_gaps(views_catalog: dict[str, Any]) -> None:
    rows = cat.sql(
        str(views_catalog["out"]),
        "SELECT patient_id, modality, num_instances, slice_step, z_extent, slice_thickness, "
        "has_instance_gap, has_position_gap FROM series ORDER BY patient_id, modality",
    ).to_pylist()
    ct0, ct1 = rows[0], rows[2]
    assert (ct0["patient_id"], ct0["modality"], ct1["patient_id"]) == ("PAT-0000", "CT", "PAT-0001")
    assert (ct0["num_instances"], ct0["has_instance_gap"], ct0["has_position_gap"]) == (
        6,
        False,
        False,
    )
    assert (ct1["num_instances"], ct1["has_instance_gap"], ct1["has_position_gap"]) == (
        5,
        True,
        True,
    )
    # the step stays the slice spacing; the extent still spans the whole series
    assert ct1["slice_step"] == pytest.approx(ct0["slice_step"])
    assert ct1["z_extent"] == pytest.approx(ct0["z_extent"]) == pytest.approx(5 * ct0["slice_step"])
    assert ct0["slice_step"] == pytest.approx(ct0["slice_thickness"])


def test_slice_positions_follow_the_normal_and_fall_back_to_z(
    views_catalog: dict[str, Any],
) -> None:
    rows = by_key(
        cat.sql(
            str(views_catalog["out"]),
            "SELECT modality, slice_step, z_extent, has_position_gap FROM series "
            "WHERE patient_id = 'PAT-0002'",
        ).to_pylist(),
        "modality",
    )
    # sagittal CT: z is constant, the positions along the normal are 3 mm apart
    assert rows["CT"]["slice_step"] == pytest.approx(3.0)
    assert rows["CT"]["z_extent"] == pytest.approx(15.0)
    assert rows["CT"]["has_position_gap"] is False
    # MR without orientation: ImagePositionPatient z, 6 mm apart in this corpus
    assert rows["MR"]["slice_step"] == pytest.approx(6.0)
    assert rows["MR"]["z_extent"] == pytest.approx(18.0)


def test_studies_view(views_catalog: dict[str, Any]) -> None:
    out = str(views_catalog["out"])
    recs = cat.sql(out, "SELECT * FROM records WHERE NOT retired").to_pylist()
    got = by_key(cat.sql(out, "SELECT * FROM studies").to_pylist(), "study_instance_uid")
    want: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        want[r["study_instance_uid"]].append(r)
    assert set(got) == set(want) and len(got) == 6
    for uid, rs in want.items():
        row = got[uid]
        assert row["num_instances"] == len(rs)
        assert row["num_series"] == len({r["series_instance_uid"] for r in rs})
        assert row["modalities"] == sorted({r["modality"] for r in rs})
        assert row["raw_bytes"] == sum(r["raw_length"] for r in rs)
        assert row["study_date"] == rs[0]["study_date"] and isinstance(row["study_date"], dt.date)
        assert row["patient_id"] == rs[0]["patient_id"]
        assert row["study_description"] == rs[0]["study_description"]
    assert list(got[next(iter(got))]) == [
        "study_instance_uid", "patient_id", "study_date", "study_description", "modalities",
        "num_series", "num_instances", "raw_bytes",
    ]  # fmt: skip


def test_retired_records_are_invisible_to_the_views(tmp_path: Path) -> None:
    src, out = tmp_path / "src", str(tmp_path / "out")
    generate_corpus(src, CorpusSpec(patients=1, ct_slices=4, mr_slices=3, ct_size=16, mr_size=16, seed=5))  # fmt: skip
    first = cat.build(None, [str(src)], out, executor="local")
    zpath = src / "PAT-0000.zip"
    ct = member_names(zpath, contains="AX_CHEST")
    mr = member_names(zpath, contains="AX_T1")
    with zipfile.ZipFile(zpath) as zf:
        changed = edited(zf.read(ct[0]), SeriesDescription="AX CHEST REPROCESSED")
    rewrite_zip(zpath, drop=(mr[-1],), replace={ct[0]: changed})
    second = cat.build(None, [str(src)], out, executor="local")
    assert second.retired_records == 7 and second.records == 6
    series = by_key(cat.sql(out, "SELECT * FROM series").to_pylist(), "modality")
    assert (series["CT"]["num_instances"], series["MR"]["num_instances"]) == (4, 2)
    assert series["CT"]["series_description"] == "AX CHEST 2.5mm STD"  # min() of both texts
    studies = cat.sql(out, "SELECT sum(num_instances) AS n, count(*) AS k FROM studies").to_pylist()
    assert studies == [{"n": 6, "k": 2}]
    descriptions = (
        cat.sql(
            out,
            "SELECT DISTINCT series_description FROM records WHERE NOT retired AND modality = 'CT'",
        )
        .column(0)
        .to_pylist()
    )
    assert sorted(descriptions) == ["AX CHEST 2.5mm STD", "AX CHEST REPROCESSED"]
    # as of the first build, the old records are the live ones
    old = cat.sql(
        out,
        "SELECT modality, num_instances FROM series ORDER BY modality",
        as_of=first.catalog_version,
    )
    assert old.to_pylist() == [
        {"modality": "CT", "num_instances": 4},
        {"modality": "MR", "num_instances": 3},
    ]


# --------------------------------------------------------------------------------------
# the same SQL in Spark
# --------------------------------------------------------------------------------------


@pytest.mark.spark
def test_views_give_the_same_rows_in_spark_sql(spark: Any, views_catalog: dict[str, Any]) -> None:
    """``register_views`` (Spark Delta when the session has it, else Arrow frames from
    delta-rs) gives the rows DataFusion gives; the view SQL itself also runs in Spark SQL."""
    out = str(views_catalog["out"])
    cat.register_views(spark, out, prefix="cv_")
    for view, key in (("series", "series_instance_uid"), ("studies", "study_instance_uid")):
        want = by_key(cat.sql(out, f"SELECT * FROM {view}").to_pylist(), key)
        got = by_key([r.asDict() for r in spark.sql(f"SELECT * FROM cv_{view}").collect()], key)
        assert set(got) == set(want)
        for k, row in want.items():
            for col, value in row.items():
                if isinstance(value, float):
                    assert got[k][col] == pytest.approx(value, abs=1e-9), (view, col)
                else:
                    assert got[k][col] == value, (view, col)
    # whichever engine register_views picked, run the shared SQL text in Spark SQL directly
    from iac_spark.catalog.views import derived_sql

    for stmt in SPARK_FUNCTIONS:
        spark.sql(stmt)
    spark.sql("CREATE OR REPLACE TEMP VIEW cv2_records AS SELECT * FROM cv_records")
    for view, key in (("series", "series_instance_uid"), ("studies", "study_instance_uid")):
        want = by_key(cat.sql(out, f"SELECT * FROM {view}").to_pylist(), key)
        direct = by_key([r.asDict() for r in spark.sql(derived_sql(view, "cv2_")).collect()], key)
        assert set(direct) == set(want)
        assert all(direct[k]["num_instances"] == want[k]["num_instances"] for k in want)
