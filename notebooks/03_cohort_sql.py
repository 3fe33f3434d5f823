# Databricks notebook source
# MAGIC %md
# MAGIC # Select a cohort with SQL
# MAGIC
# MAGIC The catalog's views (`records`, `series`, `studies`, `documents`, `packs`, `errors`, ...) hold
# MAGIC committed rows only. `register_views` makes them this session's temp views (Spark Delta when
# MAGIC the session has Delta); the same SQL runs on a laptop through `iac-spark sql` (DataFusion).
# MAGIC The views in `jobs/sql/` are written for both engines.

# COMMAND ----------

dbutils.widgets.text("out", "/Volumes/main/imaging/iac/out", "OUT")
dbutils.widgets.text("modality", "CT", "Modality")
dbutils.widgets.text("max_slice_thickness", "5.0", "Max slice thickness (mm)")
OUT = dbutils.widgets.get("out")
MODALITY = dbutils.widgets.get("modality")
MAX_SLICE_THICKNESS = float(dbutils.widgets.get("max_slice_thickness"))

# COMMAND ----------

import os

from iac_spark import catalog
from iac_spark.catalog.store import sql_str

catalog.register_views(spark, OUT)

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT modality, count(*) AS series, sum(num_instances) AS instances,
# MAGIC        count(DISTINCT patient_id) AS patients
# MAGIC FROM series
# MAGIC GROUP BY modality
# MAGIC ORDER BY modality

# COMMAND ----------

# MAGIC %md
# MAGIC ## The views of `jobs/sql/`
# MAGIC Two of them here (`errors_by_source`, `documents_by_type` and `cohort_ct_series` work the
# MAGIC same way). A notebook's working directory is its own folder, so `../jobs/sql` is the bundle's.

# COMMAND ----------

SQL_DIR = os.path.join("..", "jobs", "sql")
for name in ("cohort_by_modality_body_part", "pack_fill"):
    with open(os.path.join(SQL_DIR, f"{name}.sql"), encoding="utf-8") as f:
        print(name)
        display(spark.sql(f.read()))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The cohort
# MAGIC Series of one modality, thin enough slices, no missing slice. The widget values enter the SQL
# MAGIC as a quoted string literal and a float, so one query text serves Spark and DataFusion.

# COMMAND ----------

COHORT_SQL = f"""
SELECT series_instance_uid, patient_id, study_instance_uid, body_part_examined,
       num_instances, slice_thickness, slice_step, z_extent
FROM series
WHERE modality = {sql_str(MODALITY)} AND slice_thickness <= {MAX_SLICE_THICKNESS!r}
  AND NOT coalesce(has_position_gap, false) AND NOT coalesce(has_instance_gap, false)
ORDER BY patient_id, series_instance_uid
"""
cohort = spark.sql(COHORT_SQL)
display(cohort)

# COMMAND ----------

# MAGIC %md
# MAGIC The same cohort without Spark (DataFusion over the delta-rs tables), e.g. on a laptop:

# COMMAND ----------

same = catalog.sql(OUT, COHORT_SQL)
assert same.column("series_instance_uid").to_pylist() == [r[0] for r in cohort.select("series_instance_uid").collect()]
print(same.num_rows, "series in the cohort")
