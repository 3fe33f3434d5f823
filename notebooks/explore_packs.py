# Databricks notebook source
# MAGIC %md
# MAGIC # Explore zipped DICOM and the pack catalog
# MAGIC Install the `iac_spark` wheel on the cluster / environment first (see docs/databricks.md).

# COMMAND ----------

import iac_spark
from iac_spark import catalog

iac_spark.register(spark)  # noqa: F821 - `spark` is provided by Databricks
SOURCES = "/Volumes/main/imaging/raw/tcia"
OUT = "/Volumes/main/imaging/iac"

# COMMAND ----------

# MAGIC %md ## Metadata straight out of the zips

# COMMAND ----------

df = spark.read.format("zipdcm").load(SOURCES)  # noqa: F821
display(df.groupBy("modality").count())  # noqa: F821
display(df.filter("error IS NOT NULL").select("path", "member", "error"))  # noqa: F821

# COMMAND ----------

# MAGIC %md ## Catalog views and SQL

# COMMAND ----------

catalog.register_views(spark, OUT)  # noqa: F821
display(spark.sql("SELECT modality, count(*) AS records, sum(raw_length) AS raw_bytes FROM records GROUP BY modality"))  # noqa: F821
display(spark.sql("SELECT pack_id, num_records, file_bytes, created_at FROM packs ORDER BY created_at DESC"))  # noqa: F821

# COMMAND ----------

# MAGIC %md ## Records back from packs

# COMMAND ----------

back = spark.read.format("iac").load(f"{OUT}/packs")  # noqa: F821
display(back.limit(10))  # noqa: F821
