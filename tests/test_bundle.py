"""The Databricks asset bundle: ``databricks.yml`` and the job resources it includes.

Parsed with PyYAML, as the Databricks CLI would read it before its own substitutions, then
checked per target: every task's Python file exists beside its YAML, its parameters (with the
target's variables substituted) parse with the entry point's own ``argparse`` parser, every
schedule is a valid Quartz cron expression (croniter for the field grammar, plus the two Quartz
rules croniter does not know), and nothing names a user, a workspace or a cluster. Then each
entry point runs once as ``python jobs/<name>.py`` on a tiny corpus with the local executor.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from croniter import croniter
from deltalake import DeltaTable

import iac_spark.catalog as cat
from iac_spark.testing.corpus import CorpusSpec, generate_corpus
from iac_spark.testing.textcorpus import TextCorpusSpec, generate_text_corpus

ROOT = Path(__file__).resolve().parent.parent
JOBS = ("ingest_dicom", "ingest_text", "maintenance")
TARGETS = ("dev", "prod")
#: the variables the issue asks for (more are allowed)
VARIABLES = ("catalog", "schema", "volume", "sources", "out", "dataset", "schedule")
VAR_REF = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")
ANY_REF = re.compile(r"\$\{([^}]+)\}")


# ------------------------------------------------------------------------------------ parsing
def load_bundle() -> tuple[dict[str, Any], dict[Path, dict[str, Any]]]:
    """``databricks.yml`` and every file its ``include`` globs name."""
    main_path = ROOT / "databricks.yml"
    main = yaml.safe_load(main_path.read_text(encoding="utf-8"))
    docs = {main_path: main}
    for pattern in main.get("include") or []:
        for path in sorted(ROOT.glob(pattern)):
            docs[path] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return main, docs


MAIN, DOCS = load_bundle()


def bundle_jobs() -> dict[str, tuple[Path, dict[str, Any]]]:
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, doc in DOCS.items():
        for key, job in ((doc.get("resources") or {}).get("jobs") or {}).items():
            assert key not in found, f"job {key} defined twice"
            found[key] = (path, job)
    return found


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key path, value) of every node."""
    yield where, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}[{i}]")


def target_variables(target: str) -> dict[str, Any]:
    """The variables' values in ``target``: defaults, then the target's overrides."""
    values = {name: (spec or {}).get("default") for name, spec in MAIN["variables"].items()}
    overrides = (MAIN["targets"][target] or {}).get("variables") or {}
    unknown = sorted(set(overrides) - set(values))
    assert not unknown, f"target {target} sets undeclared variables {unknown}"
    values.update(overrides)
    missing = sorted(n for n, v in values.items() if v is None)
    assert not missing, f"target {target}: variables without a value {missing}"
    return values


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """``value`` with ``${var.NAME}`` resolved (a whole-value reference may be complex)."""
    if not isinstance(value, str):
        return value
    whole = VAR_REF.fullmatch(value)
    if whole:
        return variables[whole.group(1)]
    for name in VAR_REF.findall(value):
        assert name in variables, f"{value!r}: undeclared variable {name}"
        assert isinstance(variables[name], str), f"{value!r}: {name} is not a string"
    resolved = VAR_REF.sub(lambda m: str(variables[m.group(1)]), value)
    assert not ANY_REF.search(resolved), f"{value!r}: unresolved reference"
    return resolved


def entry_parser(path: Path) -> argparse.ArgumentParser:
    """The ``argparse`` parser of a job entry point (its module's ``parser()``)."""
    spec = importlib.util.spec_from_file_location(f"_bundle_job_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = module.parser()
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def quartz_problems(expr: str) -> list[str]:
    """Why ``expr`` is not a Quartz cron expression (Databricks' ``quartz_cron_expression``).

    Quartz: seconds minutes hours day-of-month month day-of-week [year]. croniter parses that
    field grammar (``second_at_beginning``, ``?``, ``L``, ``W``, ``#``, names, the year field);
    Quartz adds that exactly one of the two day fields is ``?`` and numbers weekdays 1-7.
    """
    fields = expr.split()
    if len(fields) not in (6, 7):
        return [f"{len(fields)} fields, Quartz has 6 or 7 (seconds first, optional year)"]
    problems = []
    if not croniter.is_valid(expr, second_at_beginning=True):
        problems.append("croniter rejects the fields")
    day_of_month, day_of_week = fields[3], fields[5]
    if (day_of_month == "?") == (day_of_week == "?"):
        problems.append("exactly one of day-of-month and day-of-week must be '?'")
    if any(int(n) not in range(1, 8) for n in re.findall(r"(?<![#/])\b\d+", day_of_week)):
        problems.append("Quartz numbers weekdays 1 (SUN) to 7 (SAT)")
    return problems


# ------------------------------------------------------------------------------------ shape
def test_targets_variables_and_jobs() -> None:
    assert {"dev", "prod"} <= set(MAIN["targets"])
    assert MAIN["targets"]["dev"].get("mode") == "development"
    assert MAIN["targets"]["prod"].get("mode") == "production"
    assert set(VARIABLES) <= set(MAIN["variables"])
    assert all((spec or {}).get("description") for spec in MAIN["variables"].values())
    assert {p.relative_to(ROOT).as_posix() for p in DOCS} >= {
        "databricks.yml",
        *(f"jobs/{j}.yml" for j in JOBS),
    }
    jobs = bundle_jobs()
    assert set(JOBS) <= set(jobs)
    for key, (_path, job) in jobs.items():
        assert job.get("max_concurrent_runs") == 1, key
        assert isinstance(job.get("timeout_seconds"), int) and job["timeout_seconds"] > 0, key
        environments = {e["environment_key"]: e for e in job.get("environments") or []}
        tasks = job.get("tasks") or []
        keys = [t["task_key"] for t in tasks]
        assert tasks and len(set(keys)) == len(keys), key
        for task in tasks:
            where = f"{key}.{task['task_key']}"
            assert 0 < task.get("timeout_seconds", 0) <= job["timeout_seconds"], where
            assert task.get("max_retries", 0) >= 1, where
            assert task.get("environment_key") in environments, where
            assert {d["task_key"] for d in task.get("depends_on") or []} <= set(keys), where
        for env in environments.values():
            assert any(d.endswith(".whl") for d in env["spec"]["dependencies"]), key
    assert "whl" in {a.get("type") for a in (MAIN.get("artifacts") or {}).values()}


def test_nothing_names_a_user_workspace_or_cluster() -> None:
    for path, doc in DOCS.items():
        for where, value in walk(doc):
            key = where.rsplit(".", 1)[-1]
            assert key not in ("existing_cluster_id", "cluster_id", "node_type_id", "host"), (
                f"{path.name}: {where}"
            )
            if isinstance(value, str):
                for bad in ("/Users/", "/Workspace/", "@", "://"):
                    assert bad not in value, f"{path.name}: {where} = {value!r}"


@pytest.mark.parametrize("target", TARGETS)
def test_task_files_and_parameters_match_the_entry_points(target: str) -> None:
    variables = target_variables(target)
    checked = 0
    catalogs = set()
    for key, (path, job) in bundle_jobs().items():
        for task in job["tasks"]:
            where = f"{target}: {key}.{task['task_key']}"
            python = task.get("spark_python_task")
            assert python is not None, f"{where}: not a spark_python_task"
            entry = (path.parent / python["python_file"]).resolve()
            assert entry.is_file() and entry.parent == ROOT / "jobs", where
            params = [substitute(p, variables) for p in python.get("parameters") or []]
            try:
                args = entry_parser(entry).parse_args(params)  # exact option names: no abbrev
            except SystemExit as exc:
                pytest.fail(f"{where}: {params} do not parse with {entry.name}'s parser ({exc})")
            # OUT and the inputs on a Volume: a filesystem every executor sees
            paths = [args.out, *(getattr(args, "sources", None) or [])]
            assert all(p.startswith("/Volumes/") for p in paths), f"{where}: {paths}"
            catalogs.add((args.out, args.engine, args.catalog_name))
            checked += 1
    assert checked >= len(JOBS)
    # every job works on the same catalog: maintenance's vacuum must see what the ingests commit
    assert len(catalogs) == 1, catalogs


@pytest.mark.parametrize("target", TARGETS)
def test_every_schedule_is_a_quartz_cron_expression(target: str) -> None:
    variables = target_variables(target)
    scheduled = {}
    for key, (_path, job) in bundle_jobs().items():
        if "schedule" in job:
            schedule = substitute(job["schedule"], variables)
            assert isinstance(schedule, dict), f"{key}: schedule is {schedule!r}"
            assert schedule.get("timezone_id") and schedule.get("pause_status"), key
            scheduled[key] = schedule["quartz_cron_expression"]
    assert "ingest_dicom" in scheduled
    everywhere = [
        v for doc in DOCS.values() for w, v in walk(doc) if w.endswith("quartz_cron_expression")
    ]
    for expr in [*scheduled.values(), *everywhere]:
        assert quartz_problems(str(expr)) == [], expr


@pytest.mark.parametrize(
    ("expr", "valid"),
    [
        ("0 0 2 * * ?", True),
        ("0 30 1 ? * MON-FRI", True),
        ("0 0 6 ? * 1", True),
        ("0 15 10 L * ? 2030", True),
        ("0 0 2 * * *", False),  # both day fields given
        ("0 0 2 ? * 0", False),  # Quartz weekdays are 1-7
        ("0 2 * * *", False),  # Unix cron: no seconds
        ("0 0 25 * * ?", False),  # no hour 25
    ],
)
def test_the_quartz_check(expr: str, valid: bool) -> None:
    assert (quartz_problems(expr) == []) is valid


# ------------------------------------------------------------------------------------ running
def run_job(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def test_the_entry_points_run_locally(tmp_path: Path) -> None:
    dicom = generate_corpus(
        tmp_path / "dicom",
        CorpusSpec(patients=1, ct_slices=3, mr_slices=2, ct_size=16, mr_size=16, seed=2),
    )
    notes = generate_text_corpus(tmp_path / "notes", TextCorpusSpec(patients=2, docs_per_patient=2))
    out = str(tmp_path / "out")
    done = run_job(
        "ingest_dicom", "--sources", str(dicom.root), "--out", out, "--executor", "local"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^packs +1 new$", done.stdout, re.MULTILINE), done.stdout
    done = run_job("ingest_text", "--sources", str(notes.root), "--out", out, "--executor", "local")
    assert done.returncode == 0, done.stderr[-2000:]
    assert cat.sql(out, "SELECT count(*) AS n FROM documents").column("n")[0].as_py() == 4
    records = DeltaTable(str(Path(out) / "_catalog" / "records"))
    assert len(records.file_uris()) >= 2  # one file per build
    done = run_job("maintenance", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "optimize records" in done.stdout
    records.update_incremental()
    assert len(records.file_uris()) == 1  # compacted
    assert cat.verify(out).ok
    # a rerun ingests nothing; a wrong OUT is a fatal error (2), never a vacuum of nothing
    again = run_job(
        "ingest_dicom", "--sources", str(dicom.root), "--out", out, "--executor", "local"
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-2000:]
    wrong = run_job("maintenance", "--out", str(tmp_path / "nowhere"), "--step", "vacuum")
    assert wrong.returncode == 2 and "no catalog" in wrong.stderr
    assert run_job("ingest_dicom", "--out", out).returncode == 2  # --sources is required
