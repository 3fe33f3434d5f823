# Databricks notebook source
# MAGIC %md
# MAGIC # Explore archives: zipped DICOM and clinical notes, read in place
# MAGIC
# MAGIC The `zipdcm` and `ziptext` data sources read archives where they lie (a Unity Catalog Volume on
# MAGIC Databricks): one row per member, nested zips opened in memory, headers parsed up to the pixel
# MAGIC data. Nothing is written. Every member that is not a clean instance or note is a row with
# MAGIC `status` and `error`, never a silent drop.
# MAGIC
# MAGIC Needs the `iac_spark` wheel on the compute (the bundle's jobs install it; for a notebook see
# MAGIC `docs/databricks.md`, "Notebooks").

# COMMAND ----------

dbutils.widgets.text("dicom_sources", "/Volumes/main/imaging/iac/raw/dicom", "DICOM archives")
dbutils.widgets.text("text_sources", "/Volumes/main/imaging/iac/raw/notes", "Clinical notes")
DICOM_SOURCES = dbutils.widgets.get("dicom_sources")
TEXT_SOURCES = dbutils.widgets.get("text_sources")

# COMMAND ----------

import json

from pyspark.sql import functions as F

import iac_spark

iac_spark.register(spark)  # the zipdcm, ziptext and iac data sources

# COMMAND ----------

# MAGIC %md
# MAGIC ## DICOM: one row per member
# MAGIC `includeSkipped` keeps the members that are plainly not DICOM (a `LICENSE.txt`), as `skipped`.

# COMMAND ----------

members = spark.read.format("zipdcm").option("includeSkipped", "true").load(DICOM_SOURCES)
display(members.groupBy("status", "modality").count().orderBy("status", "modality"))

# COMMAND ----------

series = (
    members.filter("status = 'ok'")
    .groupBy("patient_id", "modality", "series_instance_uid")
    .agg(F.count("*").alias("instances"), F.sum("size").alias("bytes"),
         F.min("rows").alias("rows"), F.min("columns").alias("columns"))
    .orderBy("patient_id", "modality", "series_instance_uid")
)
display(series)

# COMMAND ----------

# MAGIC %md
# MAGIC Problems, with the archive, the member (nested zips chain with `!`) and the reason:

# COMMAND ----------

display(members.filter("status <> 'ok'").select("path", "member", "status", "error"))

# COMMAND ----------

# MAGIC %md
# MAGIC The `meta` column is the header as DICOM JSON (PS3.18 F.2), bulk data left out:

# COMMAND ----------

first = members.filter("status = 'ok'").select("member", "meta").orderBy("member").first()
header = json.loads(first["meta"])
print(first["member"], "-", len(header), "attributes; Modality:", header["00080060"]["Value"])

# COMMAND ----------

# MAGIC %md
# MAGIC ## Clinical notes: one row per note
# MAGIC Fields come from the path (`INSTITUTION/PATIENT_ID/ENCOUNTER/DOCTYPE_YYYYMMDDHHMMSS.txt`);
# MAGIC the encoding is detected (UTF-8, UTF-16 with a BOM, GB18030).

# COMMAND ----------

notes = spark.read.format("ziptext").load(TEXT_SOURCES)
display(
    notes.filter("status = 'ok'")
    .groupBy("doc_type", "encoding")
    .agg(F.count("*").alias("notes"), F.sum("n_chars").alias("chars"))
    .orderBy("doc_type", "encoding")
)

# COMMAND ----------

display(notes.filter("status = 'ok'").select("doc_id", F.substring("text", 1, 40).alias("begins"))
        .orderBy("doc_id").limit(5))
display(notes.filter("status = 'error'").select("path", "member", "error"))
