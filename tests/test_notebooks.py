"""Every notebook in ``notebooks/`` runs cell by cell against the suite's local SparkSession.

The notebooks are in Databricks source format; ``tests/notebook_shim.py`` stands in for
``dbutils.widgets`` and ``display``. The widgets' defaults are Volume paths, so the test gives
values for a small generated corpus (and the local executor); a notebook's working directory is
its own folder, as on Databricks (DBR 14+), so ``../jobs/sql`` resolves the same way.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import iac_spark.catalog as cat
from iac_spark.catalog.views import VIEWS
from iac_spark.testing.corpus import CorpusSpec, generate_corpus
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

from .notebook_shim import HEADER, NotebookRun, parse_notebook, run_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.spark]

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.py"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """DICOM and notes sources, and a catalog built from them (for the reading notebooks)."""
    root = tmp_path_factory.mktemp("notebooks")
    dicom = generate_corpus(
        root / "dicom",
        CorpusSpec(patients=2, ct_slices=4, mr_slices=2, ct_size=16, mr_size=16, seed=4),
    )
    (root / "dicom" / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    notes = generate_text_corpus(
        root / "notes", TextCorpusSpec(patients=2, docs_per_patient=3, junk=("empty",), seed=4)
    )
    out = str(root / "out")
    cat.build(None, [str(dicom.root)], out, dataset="dicom", executor="local")
    cat.build(None, [str(notes.root)], out, dataset="notes", kind="text", executor="local")
    return {"dicom": str(dicom.root), "notes": str(notes.root), "out": out, "root": str(root)}


def run(path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch, **widgets: str) -> NotebookRun:
    monkeypatch.chdir(path.parent)
    return run_notebook(path, spark, widgets=widgets)


def test_the_notebooks_are_databricks_source_files() -> None:
    assert len(NOTEBOOKS) >= 3
    for path in NOTEBOOKS:
        assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER, path.name
        kinds = [c.kind for c in parse_notebook(path)]
        assert kinds[0] == "md" and "python" in kinds, path.name  # a title, then code
        assert "/Users/" not in path.read_text(encoding="utf-8"), path.name


def test_explore_archives(
    spark: Any, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run(
        NOTEBOOK_DIR / "01_explore_archives.py", spark, monkeypatch,
        dicom_sources=corpus["dicom"], text_sources=corpus["notes"],
    )  # fmt: skip
    by_status = {(r["status"], r["modality"]): r["count"] for r in done.displayed[0].rows}
    assert by_status[("ok", "CT")] == 8 and by_status[("ok", "MR")] == 4
    assert by_status[("error", None)] == 1  # broken.zip
    problems = done.displayed[2].rows
    assert any(r["path"].endswith("broken.zip") for r in problems)
    assert len(done.displayed) == 6 and done.displayed[4].rows  # notes by type, first notes


def test_build_packs(
    spark: Any, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = f"nb{uuid.uuid4().hex[:6]}_"
    out = str(tmp_path / "out")
    try:
        done = run(
            NOTEBOOK_DIR / "02_build_packs.py", spark, monkeypatch,
            dicom_sources=corpus["dicom"], text_sources=corpus["notes"], out=out,
            executor="local", engine="delta-rs", views_schema="default", view_prefix=prefix,
        )  # fmt: skip
        ns = done.namespace
        assert ns["dicom"].records == 12 and ns["text"].new_packs >= 1
        assert ns["again"].nothing_to_do and ns["report"].ok
        series = {r["modality"]: r["series"] for r in done.displayed[-1].rows}
        assert series == {"CT": 2, "MR": 2}  # through the published persistent views
    finally:
        for name in VIEWS:
            spark.sql(f"DROP VIEW IF EXISTS default.{prefix}{name}")
        spark.sql(f"DROP FUNCTION IF EXISTS default.{prefix}array_element")


def test_cohort_sql(spark: Any, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    done = run(NOTEBOOK_DIR / "03_cohort_sql.py", spark, monkeypatch, out=corpus["out"])
    sql_cell = done.displayed[0].rows  # the %sql cell
    assert {r["modality"]: r["series"] for r in sql_cell} == {"CT": 2, "MR": 2}
    assert done.namespace["same"].num_rows == 2  # both CT series (4 slices, thickness <= 5 mm)


def test_training_samples(
    spark: Any, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run(
        NOTEBOOK_DIR / "04_training_samples.py",
        spark,
        monkeypatch,
        out=corpus["out"],
        batch_size="3",
    )
    ns = done.namespace
    assert len(ns["ds"]) == 8 and ns["sample"]["pixels"].shape == (16, 16)
    assert [len(b) for b in ns["epoch"]] == [3, 3, 2]
    assert ns["volume"].shape == (4, 16, 16)
