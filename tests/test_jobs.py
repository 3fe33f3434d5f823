"""``iac_spark.jobs``, the shared part of the job entry points, and the entry points in-process.

No JVM: the session helper is checked with the session constructors replaced, and the jobs run
with ``--executor local`` and the delta-rs catalog while any attempt to start a session fails
the test (``tests/test_bundle.py`` runs them as ``python jobs/<name>.py``).
"""

from __future__ import annotations

import argparse
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import iac_spark.catalog as cat
from iac_spark import jobs
from iac_spark.errors import CatalogError
from iac_spark.testing.corpus import CorpusSpec, generate_corpus
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"

#: every option of every entry point and its default (the bundle's tasks rely on these)
DEFAULTS: dict[str, dict[str, Any]] = {
    "ingest_dicom": {
        "sources": None, "out": None, "dataset": "default", "layout": None, "executor": "spark",
        "engine": "delta-rs", "catalog_name": None, "views_schema": None, "view_prefix": "iac_",
        "retry_failed": False, "master": "local[*]",
    },
    "ingest_text": {
        "sources": None, "out": None, "dataset": "notes", "layout": None, "compressed": None,
        "encoding": None, "path_pattern": None, "executor": "spark", "engine": "delta-rs",
        "catalog_name": None, "views_schema": None, "view_prefix": "iac_", "master": "local[*]",
    },
    "maintenance": {
        "out": None, "step": "all", "decode": False, "dry_run": False, "engine": "delta-rs",
        "catalog_name": None, "master": "local[*]",
    },
}  # fmt: skip


def entry_point(name: str, function: str = "main") -> Callable[..., Any]:
    """A function of ``jobs/<name>.py``, the file run as a module (not as ``__main__``)."""
    return runpy.run_path(str(JOBS_DIR / f"{name}.py"))[function]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_the_parsers_options_and_defaults(name: str) -> None:
    parser = entry_point(name, "parser")()
    assert parser.prog == name and not parser.allow_abbrev
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    assert defaults == DEFAULTS[name]
    required = ["--out", "o", *(["--sources", "s"] if "sources" in defaults else [])]
    args = parser.parse_args([*required, "--catalog-name", ""])
    assert args.catalog_name is None  # an empty bundle variable is "not given"
    assert not jobs.uses_spark_delta(args)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*required, "--catalog", "main.x"])  # no abbreviations
    assert exc.value.code == 2


def test_the_shared_help_texts() -> None:
    helps = {
        name: {a.dest: a.help for a in entry_point(name, "parser")()._actions} for name in DEFAULTS
    }
    for dest in ("out", "master"):
        assert len({h[dest] for h in helps.values()}) == 1, dest
    for dest in ("executor", "engine", "catalog_name", "views_schema", "view_prefix"):
        assert helps["ingest_dicom"][dest] == helps["ingest_text"][dest], dest
    assert helps["ingest_dicom"]["engine"].startswith("catalog writer:")
    assert helps["maintenance"]["engine"].startswith("catalog engine:")


@pytest.mark.parametrize(
    ("engine", "catalog_name", "views_schema", "delta"),
    [
        ("delta-rs", None, None, False),
        ("spark", None, None, True),
        ("delta-rs", "main.imaging.iac_raw", None, True),
        ("delta-rs", None, "main.imaging", True),
    ],
)
def test_uses_spark_delta(
    engine: str, catalog_name: str | None, views_schema: str | None, delta: bool
) -> None:
    args = argparse.Namespace(engine=engine, catalog_name=catalog_name, views_schema=views_schema)
    assert jobs.uses_spark_delta(args) is delta


def test_spark_session_is_local_off_databricks_and_the_jobs_own_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pyspark.sql import SparkSession

    import iac_spark.session

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        iac_spark.session, "local_session", lambda m, *, delta: calls.append(("local", m, delta))
    )
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", lambda self: "the job's session")
    monkeypatch.setattr(iac_spark.session, "register", lambda s: calls.append(("register", s)))
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    jobs.spark_session("local[2]", delta=True)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    jobs.spark_session("local[2]", delta=False)
    assert calls == [("local", "local[2]", True), ("register", "the job's session")]


def test_run_job_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = jobs.job_parser("tidy", "Tidy.")
    jobs.add_out_argument(parser)

    def fails(args: argparse.Namespace) -> int:
        raise CatalogError(f"no catalog under {args.out}")

    assert jobs.run_job(parser, fails, ["--out", "/nowhere"]) == 2
    assert capsys.readouterr().err == "tidy: no catalog under /nowhere\n"
    assert jobs.run_job(parser, lambda args: 1, ["--out", "o"]) == 1  # the job's own verdict
    with pytest.raises(SystemExit) as exc:
        jobs.run_job(parser, lambda args: 0, [])  # --out is required
    assert exc.value.code == 2

    def breaks(args: argparse.Namespace) -> int:
        raise KeyError(args.out)

    with pytest.raises(KeyError):  # not an IacSparkError: a traceback
        jobs.run_job(parser, breaks, ["--out", "o"])


def test_the_entry_points_run_in_process_without_a_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_session(master: str, *, delta: bool) -> None:
        raise AssertionError(f"a session was started ({master}, delta={delta})")

    monkeypatch.setattr(jobs, "spark_session", no_session)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    dicom = generate_corpus(
        tmp_path / "dicom",
        CorpusSpec(patients=1, ct_slices=2, mr_slices=2, ct_size=16, mr_size=16, seed=3),
    )
    notes = generate_text_corpus(tmp_path / "notes", TextCorpusSpec(patients=1, docs_per_patient=2))
    out = str(tmp_path / "out")
    local = ["--out", out, "--executor", "local", "--catalog-name", "", "--views-schema", ""]
    assert entry_point("ingest_dicom")(["--sources", str(dicom.root), *local]) == 0
    assert "packs           1 new" in capsys.readouterr().out
    assert entry_point("ingest_text")(["--sources", str(notes.root), *local]) == 0
    assert cat.sql(out, "SELECT count(*) AS n FROM documents").column("n")[0].as_py() == 2
    capsys.readouterr()
    assert entry_point("maintenance")(["--out", out, "--step", "verify", "--catalog-name", ""]) == 0
    nowhere = ["--out", str(tmp_path / "nowhere"), "--step", "vacuum"]
    assert entry_point("maintenance")(nowhere) == 2
    assert capsys.readouterr().err.startswith("maintenance: no catalog at ")
