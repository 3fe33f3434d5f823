"""The SQL of ``jobs/sql/``: one text per view, the same rows from DataFusion and Spark SQL.

Each file runs as it is through ``iac-spark sql OUT "<file>"`` (the CLI, DataFusion over the
delta-rs tables) and through ``spark.sql`` over :func:`~iac_spark.catalog.register_views`'
views (Spark Delta on this suite's session), on one small catalog holding DICOM packs, text
packs and error rows; the results must be equal and not empty.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import iac_spark.catalog as cat
from iac_spark import cli
from iac_spark.testing.corpus import CorpusSpec, generate_corpus
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

pytestmark = pytest.mark.spark

SQL_DIR = Path(__file__).resolve().parent.parent / "jobs" / "sql"
SQL_FILES = sorted(SQL_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sqlviews")
    dicom = generate_corpus(
        root / "dicom",
        CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=16, mr_size=16, seed=3),
    )
    (root / "dicom" / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")  # an error row
    shutil.copy(dicom.zips[0], root / "dicom" / "copy.zip")  # duplicates of packed instances
    notes = generate_text_corpus(
        root / "notes", TextCorpusSpec(patients=3, docs_per_patient=3, junk=("all",), seed=3)
    )
    target = str(root / "out")
    cat.build(None, [str(root / "dicom")], target, dataset="dicom", executor="local")
    cat.build(None, [str(notes.root)], target, dataset="notes", kind="text", executor="local")
    return target


@pytest.fixture(scope="module")
def views(spark: Any, out: str) -> Any:
    """The suite's session with the catalog's views registered (temp views packs … studies)."""
    cat.register_views(spark, out)
    return spark


def by_cli(out: str, query: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert cli.main(["sql", out, query, "--format", "json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def by_spark(spark: Any, query: str) -> list[dict[str, Any]]:
    rows = spark.sql(query).toArrow().to_pylist()
    # the CLI's JSON rendering, so both sides compare as the same plain values
    result: list[dict[str, Any]] = json.loads(json.dumps(rows, ensure_ascii=False, default=str))
    return result


def test_the_sql_files_are_there() -> None:
    names = {p.stem for p in SQL_FILES}
    assert {"cohort_by_modality_body_part", "errors_by_source", "pack_fill"} <= names
    assert "documents_by_type" in names and "cohort_ct_series" in names


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: p.stem)
def test_same_rows_in_datafusion_and_spark(
    views: Any, out: str, path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = path.read_text(encoding="utf-8")
    datafusion = by_cli(out, query, capsys)
    assert datafusion, f"{path.name}: no rows on the test catalog"
    assert by_spark(views, query) == datafusion
