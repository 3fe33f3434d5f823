# Databricks notebook source
# MAGIC %md
# MAGIC # Build packs and the catalog
# MAGIC
# MAGIC The same incremental build the `ingest_dicom` / `ingest_text` jobs run: scan the archives,
# MAGIC pack whole patients into `.iac` packs under `OUT/packs/<dataset>/`, and commit one run to
# MAGIC the Delta catalog (`OUT/_catalog`). A second build over the same archives commits nothing.
# MAGIC
# MAGIC * `executor`: `spark` runs the pack tasks on the cluster's executors (OUT must be on a Volume,
# MAGIC   which every executor sees); `local` runs them in the driver.
# MAGIC * `engine`: who writes the catalog tables, `spark` (Spark Delta) or `delta-rs`.
# MAGIC * `views_schema`: where the analysts' persistent views go (empty: not published).

# COMMAND ----------

dbutils.widgets.text("dicom_sources", "/Volumes/main/imaging/iac/raw/dicom", "DICOM archives")
dbutils.widgets.text("text_sources", "/Volumes/main/imaging/iac/raw/notes", "Clinical notes")
dbutils.widgets.text("out", "/Volumes/main/imaging/iac/out", "OUT")
dbutils.widgets.text("dicom_dataset", "dicom", "DICOM dataset")
dbutils.widgets.text("text_dataset", "notes", "Text dataset")
dbutils.widgets.dropdown("executor", "spark", ["spark", "local"], "Executor")
dbutils.widgets.dropdown("engine", "spark", ["spark", "delta-rs"], "Catalog engine")
dbutils.widgets.text("views_schema", "main.imaging", "Views schema")
dbutils.widgets.text("view_prefix", "iac_", "View prefix")
DICOM_SOURCES = dbutils.widgets.get("dicom_sources")
TEXT_SOURCES = dbutils.widgets.get("text_sources")
OUT = dbutils.widgets.get("out")
DICOM_DATASET = dbutils.widgets.get("dicom_dataset")
TEXT_DATASET = dbutils.widgets.get("text_dataset")
EXECUTOR = dbutils.widgets.get("executor")
ENGINE = dbutils.widgets.get("engine")
VIEWS_SCHEMA = dbutils.widgets.get("views_schema")
VIEW_PREFIX = dbutils.widgets.get("view_prefix")

# COMMAND ----------

import iac_spark
from iac_spark import catalog

iac_spark.register(spark)

# COMMAND ----------

# MAGIC %md
# MAGIC ## DICOM

# COMMAND ----------

dicom = catalog.build(spark, [DICOM_SOURCES], OUT, dataset=DICOM_DATASET, kind="dicom",
                      executor=EXECUTOR, engine=ENGINE, progress=print)
print(dicom.summary_table())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Clinical notes

# COMMAND ----------

text = catalog.build(spark, [TEXT_SOURCES], OUT, dataset=TEXT_DATASET, kind="text",
                     executor=EXECUTOR, engine=ENGINE, progress=print)
print(text.summary_table())

# COMMAND ----------

# MAGIC %md
# MAGIC Incremental: the same archives again, nothing new to pack.

# COMMAND ----------

again = catalog.build(spark, [DICOM_SOURCES], OUT, dataset=DICOM_DATASET, kind="dicom",
                      executor=EXECUTOR, engine=ENGINE)
print(again.summary())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Verify and look at the catalog
# MAGIC `verify` re-reads every pack header and checks each record's CRC-32 against the catalog.

# COMMAND ----------

report = catalog.verify(OUT)
print(report)
display(catalog.sql(OUT, "SELECT dataset, payload_type, count(*) AS packs, sum(num_records) AS records, "
                         "sum(file_bytes) AS file_bytes FROM packs GROUP BY dataset, payload_type "
                         "ORDER BY dataset, payload_type").to_pandas())
display(catalog.sql(OUT, "SELECT stage, count(*) AS n FROM errors GROUP BY stage ORDER BY stage").to_pandas())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Publish the analysts' views
# MAGIC Persistent views `<views_schema>.<view_prefix><table>` (packs, records, documents, sources,
# MAGIC errors, runs, series, studies) that show committed runs only: plain SQL in Databricks SQL
# MAGIC never sees a half-written build.

# COMMAND ----------

if VIEWS_SCHEMA:
    views = catalog.publish_views(spark, OUT, prefix=VIEW_PREFIX, schema=VIEWS_SCHEMA)
    display(spark.sql(f"SELECT modality, count(*) AS series, sum(num_instances) AS instances "
                      f"FROM {views['series']} GROUP BY modality ORDER BY modality"))
