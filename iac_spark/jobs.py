"""What the Databricks job entry points (``jobs/*.py``) share: arguments, session, exit code.

Each entry point keeps its own ``parser()`` (``tests/test_bundle.py`` parses every bundle task's
parameters with it), its own arguments and its own steps; this module holds the rest, once:
the parser settings (exact option names, no abbreviations), the arguments every job or every
ingest job has, with their help texts, the session (Databricks' own when the job runs there,
else a local one, started only when a step needs Spark), an ingest's build and views, and the
exit codes, as ``iac-spark``'s: 0 success, 1 problems found (a job's own verdict), 2 fatal (bad
arguments, an :class:`~iac_spark.errors.IacSparkError`).

No pyspark is imported until a session is asked for, so a job with ``--executor local`` and
the default ``--engine delta-rs`` runs without a JVM.

Example, a whole entry point:

    >>> def parser() -> argparse.ArgumentParser:
    ...     p = job_parser("tidy", "Tidy the catalog.\\n\\nMore words for --help.")
    ...     add_out_argument(p)
    ...     add_catalog_arguments(p, job="maintenance")
    ...     add_master_argument(p)
    ...     return p
    >>> def tidy(args: argparse.Namespace) -> int:
    ...     print("tidying", args.out, "with", args.engine)
    ...     return 0
    >>> run_job(parser(), tidy, ["--out", "demo_out"])
    tidying demo_out with delta-rs
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from . import catalog
from .errors import IacSparkError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "add_catalog_arguments",
    "add_ingest_arguments",
    "add_master_argument",
    "add_out_argument",
    "ingest",
    "job_parser",
    "run_job",
    "spark_session",
    "uses_spark_delta",
]

#: an ingest job writes the catalog; maintenance works on one that is there
_ENGINE_HELP = {
    "ingest": "catalog writer: delta-rs (embedded) or Spark Delta",
    "maintenance": "catalog engine: delta-rs (embedded) or Spark Delta",
}
_CATALOG_NAME_HELP = {
    "ingest": "catalog tables as metastore / Unity Catalog tables <name>_<table> "
    "(e.g. main.imaging.iac_raw; implies --engine spark); empty: path tables under OUT",
    "maintenance": "the catalog tables are metastore / Unity Catalog tables <name>_<table> "
    "(implies --engine spark); empty: path tables under OUT",
}


def _none_if_empty(value: str) -> str | None:
    """A bundle variable left empty (``""``) means "not given"."""
    return value or None


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A job's parser: ``doc``'s first paragraph as its description, no abbreviated options.

    The bundle passes exact option names; an abbreviation that parses today would break when
    another option starting the same way is added.

    >>> p = job_parser("tidy", "Tidy the catalog.\\n\\nMore words.")
    >>> p.prog, p.description, p.allow_abbrev
    ('tidy', 'Tidy the catalog.', False)
    """
    return argparse.ArgumentParser(
        prog=prog, description=(doc or "").split("\n\n")[0], allow_abbrev=False
    )


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    """``--out`` (required): the output root, ``OUT/packs/`` and ``OUT/_catalog/``.

    >>> p = job_parser("tidy", None)
    >>> add_out_argument(p)
    >>> p.parse_args(["--out", "/Volumes/main/imaging/iac/out"]).out
    '/Volumes/main/imaging/iac/out'
    """
    parser.add_argument("--out", required=True, help="output root: OUT/packs/ and OUT/_catalog/")


def add_ingest_arguments(
    parser: argparse.ArgumentParser, *, sources: str, dataset: str, layouts: Sequence[str]
) -> None:
    """What an ingest reads and where it writes: ``--sources``, ``--out``, ``--dataset``, ``--layout``.

    ``sources`` is the help text of ``--sources`` (required, one or more), ``dataset`` the
    default of ``--dataset`` (``OUT/packs/<dataset>/``), ``layouts`` the choices of
    ``--layout`` (default: the build's own for the kind of input).

    >>> p = job_parser("ingest", None)
    >>> add_ingest_arguments(p, sources="folders or zips", dataset="default",
    ...                      layouts=("dicom_p10", "dicom_patient"))
    >>> p.parse_args(["--sources", "a.zip", "b.zip", "--out", "out"])
    Namespace(sources=['a.zip', 'b.zip'], out='out', dataset='default', layout=None)
    """
    parser.add_argument("--sources", nargs="+", required=True, help=sources)
    add_out_argument(parser)
    parser.add_argument("--dataset", default=dataset, help="dataset name: OUT/packs/<dataset>/")
    parser.add_argument("--layout", choices=tuple(layouts), default=None)


def add_catalog_arguments(
    parser: argparse.ArgumentParser, *, job: Literal["ingest", "maintenance"]
) -> None:
    """The catalog's arguments: ``--engine`` and ``--catalog-name``, and for an ingest job also
    ``--executor`` before them and ``--views-schema``, ``--view-prefix`` after them.

    An empty ``--catalog-name`` or ``--views-schema`` (an unset bundle variable) is ``None``.

    >>> p = job_parser("tidy", None)
    >>> add_catalog_arguments(p, job="maintenance")
    >>> p.parse_args(["--catalog-name", ""])
    Namespace(engine='delta-rs', catalog_name=None)
    >>> p = job_parser("ingest", None)
    >>> add_catalog_arguments(p, job="ingest")
    >>> p.parse_args(["--catalog-name", "main.imaging.iac_raw", "--views-schema", "main.imaging"])
    ... # doctest: +NORMALIZE_WHITESPACE
    Namespace(executor='spark', engine='delta-rs', catalog_name='main.imaging.iac_raw',
              views_schema='main.imaging', view_prefix='iac_')
    """
    ingest = job == "ingest"
    if ingest:
        parser.add_argument(
            "--executor", choices=("spark", "local"), default="spark",
            help="pack tasks on Spark executors (default) or in this process",
        )  # fmt: skip
    parser.add_argument(
        "--engine", choices=("delta-rs", "spark"), default="delta-rs", help=_ENGINE_HELP[job]
    )
    parser.add_argument(
        "--catalog-name", type=_none_if_empty, default=None, help=_CATALOG_NAME_HELP[job]
    )
    if ingest:
        parser.add_argument(
            "--views-schema", type=_none_if_empty, default=None,
            help="publish the persistent views into this schema (catalog.schema); empty: none",
        )  # fmt: skip
        parser.add_argument(
            "--view-prefix", default="iac_", help="view names <schema>.<prefix><table>"
        )


def add_master_argument(parser: argparse.ArgumentParser) -> None:
    """``--master`` (default ``local[*]``): the master of a local session (unused on Databricks).

    >>> p = job_parser("tidy", None)
    >>> add_master_argument(p)
    >>> p.parse_args([]).master
    'local[*]'
    """
    parser.add_argument("--master", default="local[*]", help="Spark master of a local session")


def uses_spark_delta(args: argparse.Namespace) -> bool:
    """Whether the job needs a Delta-enabled Spark session.

    It does for ``--engine spark``, a ``--catalog-name`` (metastore tables) or a
    ``--views-schema`` (persistent views live in the metastore).

    >>> uses_spark_delta(argparse.Namespace(engine="delta-rs", catalog_name=None))
    False
    >>> uses_spark_delta(argparse.Namespace(engine="delta-rs", catalog_name="main.imaging.iac_raw"))
    True
    """
    return (
        args.engine == "spark"
        or args.catalog_name is not None
        or bool(getattr(args, "views_schema", None))
    )


def spark_session(master: str, *, delta: bool) -> SparkSession:
    """Databricks' session (classic or serverless) when there, else a local one.

    On Databricks (``DATABRICKS_RUNTIME_VERSION`` set) the job's own session, which has Delta
    built in; elsewhere :func:`iac_spark.local_session` on ``master``, with the Delta Lake jars
    when ``delta``. Either way with the ``zipdcm``, ``ziptext`` and ``iac`` sources registered.

    >>> spark = spark_session("local[2]", delta=False)                    # doctest: +SKIP
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        from pyspark.sql import SparkSession

        from .session import register

        return register(SparkSession.builder.getOrCreate())
    from .session import local_session

    return local_session(master, delta=delta)


def ingest(args: argparse.Namespace, *, kind: Literal["dicom", "text"], **options: Any) -> int:
    """An ingest job's work: build, print the summary, publish the views when asked; exit code.

    :func:`iac_spark.catalog.build` of ``--sources`` into ``--out`` with the arguments of
    :func:`add_ingest_arguments` and :func:`add_catalog_arguments` and the job's own
    ``options`` (``retry_failed=``, ``text_options=``, ...), progress printed; a session is
    started only when a step needs Spark. Then, with ``--views-schema``, the analysts'
    persistent views are (re)published there as ``<--view-prefix><table>``
    (:func:`iac_spark.catalog.publish_views`) and their names printed.

    Returns 0: error rows (bad members, unreadable sources) do not fail an ingest, they are in
    the catalog's ``errors`` table; a failed build or commit raises.

    >>> import tempfile
    >>> from iac_spark.testing.corpus import CorpusSpec, generate_corpus
    >>> root = tempfile.mkdtemp()
    >>> dicom = generate_corpus(f"{root}/dicom", CorpusSpec(patients=1, ct_slices=2, mr_slices=2,
    ...                                                     ct_size=16, mr_size=16))
    >>> p = job_parser("ingest_dicom", None)
    >>> add_ingest_arguments(p, sources="zips", dataset="ct", layouts=("dicom_p10",))
    >>> add_catalog_arguments(p, job="ingest")
    >>> add_master_argument(p)
    >>> args = p.parse_args(["--sources", str(dicom.root), "--out", f"{root}/out",
    ...                      "--executor", "local"])                # no JVM, delta-rs catalog
    >>> ingest(args, kind="dicom")                                       # doctest: +ELLIPSIS
    1 sources: 1 new, 0 changed, 0 unchanged
    ...
    packs           1 new
    records         4
    ...
    0
    """
    delta = uses_spark_delta(args)
    result = catalog.build(
        lambda: spark_session(args.master, delta=delta),  # started only when needed
        args.sources, args.out, dataset=args.dataset, kind=kind, executor=args.executor,
        engine=args.engine, catalog_name=args.catalog_name, progress=print,
        **({"layout": args.layout} if args.layout else {}), **options,
    )  # fmt: skip
    print(result.summary_table())
    if args.views_schema:
        views = catalog.publish_views(
            spark_session(args.master, delta=True), args.out,
            catalog_name=args.catalog_name, prefix=args.view_prefix, schema=args.views_schema,
        )  # fmt: skip
        print("views          ", ", ".join(views.values()))
    return 0


def run_job(
    parser: argparse.ArgumentParser,
    job: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default: the command line) with ``parser`` and run ``job``; its exit code.

    ``job``'s own return value (0, or 1 for problems found), or 2 for an
    :class:`~iac_spark.errors.IacSparkError`, printed to stderr as ``<prog>: <message>``. Bad
    arguments exit with 2 from ``argparse``; other exceptions propagate (a traceback, exit 1).

    >>> from iac_spark.errors import CatalogError
    >>> def fails(args: argparse.Namespace) -> int:
    ...     raise CatalogError(f"no catalog at {args.out}/_catalog/runs")
    >>> p = job_parser("tidy", None)
    >>> add_out_argument(p)
    >>> run_job(p, fails, ["--out", "/nowhere"])  # stderr: tidy: no catalog at /nowhere/...
    2
    """
    args = parser.parse_args(argv)
    try:
        return job(args)
    except IacSparkError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
