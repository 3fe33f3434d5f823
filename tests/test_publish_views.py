"""Persistent views that carry the committed rule (``publish_views``), for plain-SQL analysts.

A build is killed between its table commits: its ``records``, ``sources``, ``packs`` and
``errors`` rows are in the raw tables (appended by the store, exactly as the commit writes
them) but its ``runs`` row is not. ``spark.sql`` over the published names must not see any of
it, in a *new* session (so nothing rests on this session's temp views or functions); once the
commit completes, the same names show the build. Path tables under ``OUT/_catalog`` (two-part
view names in the session catalog) and metastore tables (three-part names: the Unity Catalog
code path) are both covered, and so is the maintenance job's ``OPTIMIZE`` of path tables.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import iac_spark.catalog as cat
from iac_spark.catalog.rows import catalog_rows
from iac_spark.catalog.schema import SCHEMAS
from iac_spark.catalog.spark_delta import optimize_tables
from iac_spark.catalog.store import CatalogStore, DeltaRsStore
from iac_spark.catalog.views import VIEWS
from iac_spark.errors import CatalogError, OptionError
from iac_spark.inputs import Source, discover, survey
from iac_spark.packing import BuildResult, LocalExecutor, run_build
from iac_spark.testing.corpus import CorpusSpec, generate_corpus

pytestmark = [pytest.mark.spark, pytest.mark.delta_spark]


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("pv_corpus")
    spec = CorpusSpec(patients=2, ct_slices=3, mr_slices=2, ct_size=16, mr_size=16, seed=11)
    return list(generate_corpus(root, spec).zips)


def killed_before_runs(
    paths: list[str], out: str, store: CatalogStore
) -> tuple[BuildResult, list[Source]]:
    """A real build whose commit stopped after every table but ``runs``."""
    sources = survey(discover(paths))
    result = run_build(
        sources, out, executor=LocalExecutor(1), dataset="pv",
        scan_options={"promoted": True}, keep_staging=True,
    )  # fmt: skip
    store.ensure()
    rows = catalog_rows(result, sources)
    for name in ("records", "sources", "packs", "errors"):
        store.append(name, getattr(rows, name), run_id=result.run_id)
    return result, sources


def counts(session: Any, names: dict[str, str]) -> dict[str, int]:
    """Rows of every view, in one query."""
    select = ", ".join(f"(SELECT count(*) FROM {v}) AS {n}" for n, v in names.items())
    return dict(session.sql(f"SELECT {select}").collect()[0].asDict())


def test_path_table_views_hide_a_half_written_build(
    delta_spark: Any, zips: list[Path], tmp_path: Path
) -> None:
    spark = delta_spark
    out = str(tmp_path / "out")
    store = DeltaRsStore(out)
    with pytest.raises(CatalogError, match="run a build"):
        cat.publish_views(spark, out)
    result, files = killed_before_runs([str(zips[0])], out, store)
    prefix = f"pv{uuid.uuid4().hex[:8]}_"
    names = cat.publish_views(spark, out, prefix=prefix)
    assert names == {n: f"default.{prefix}{n}" for n in VIEWS}
    other = spark.newSession()  # no temp views or temp functions of `spark` in there
    try:
        # the raw tables hold the build; the published views show none of it
        raw = spark.read.format("delta").load(store.location("records")).count()
        assert raw == result.num_records > 0
        assert set(counts(other, names).values()) == {0}
        cat.commit_build(out, result, files)  # the commit completes (retried over the leftovers)
        seen = counts(other, names)
        assert seen["records"] == result.num_records
        assert seen["runs"] == 1 and seen["sources"] == 1 and seen["packs"] >= 1
        assert seen["series"] == 2 and seen["studies"] == 2  # one CT and one MR study
        # the same rows as DataFusion over the same rule (the committed views of `cat.sql`)
        for name in ("records", "series", "studies"):
            want = cat.sql(out, f"SELECT count(*) AS n FROM {name}").column("n")[0].as_py()
            assert seen[name] == want, name
        slices = other.sql(
            f"SELECT slice_step FROM {names['series']} WHERE num_instances = 3"
        ).collect()
        assert [r[0] > 0 for r in slices] == [True]  # the persistent array_element helper works
        # the maintenance job's OPTIMIZE of the path tables (Spark Delta) changes no row
        assert sorted(optimize_tables(cat.SparkDeltaStore(spark, out))) == sorted(SCHEMAS)
        assert counts(other, names) == seen
        # republishing is idempotent; a bad prefix is refused before anything is created
        assert cat.publish_views(spark, out, prefix=prefix) == names
        with pytest.raises(OptionError, match="prefix"):
            cat.publish_views(spark, out, prefix="bad-prefix")
    finally:
        for v in names.values():
            spark.sql(f"DROP VIEW IF EXISTS {v}")
        spark.sql(f"DROP FUNCTION IF EXISTS default.{prefix}array_element")


def test_metastore_table_views_by_three_part_names(
    delta_spark: Any, zips: list[Path], tmp_path: Path
) -> None:
    spark = delta_spark
    db = f"pv_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {db} LOCATION '{tmp_path / 'warehouse'}'")
    try:
        out = str(tmp_path / "out")
        catalog_name = f"spark_catalog.{db}.raw"  # tables spark_catalog.<db>.raw_<table>
        store = cat.SparkDeltaStore(spark, out, catalog_name=catalog_name)
        result, files = killed_before_runs([str(zips[1])], out, store)
        with pytest.raises(CatalogError, match="would replace the catalog tables"):
            cat.publish_views(spark, out, catalog_name=catalog_name, prefix="raw_")
        names = cat.publish_views(spark, out, catalog_name=catalog_name)
        assert names["records"] == f"spark_catalog.{db}.iac_records"
        other = spark.newSession()
        assert spark.table(f"{catalog_name}_records").count() == result.num_records > 0
        assert set(counts(other, names).values()) == {0}
        cat.commit_build(out, result, files, store=store)
        seen = counts(other, names)
        assert seen["records"] == result.num_records and seen["runs"] == 1
        assert seen["series"] == 2 and seen["studies"] == 2
        committed = cat.open(out, store=store)
        for name in ("packs", "records", "sources", "errors"):
            assert seen[name] == committed.table(name).num_rows, name
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")
