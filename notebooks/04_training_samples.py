# Databricks notebook source
# MAGIC %md
# MAGIC # Read training samples with `RecordDataset`
# MAGIC
# MAGIC `RecordDataset(out, query, decode=...)` runs a catalog SQL query once and serves the records
# MAGIC it selects as a map-style dataset: `bytes` (the original Part-10 file, byte-exact), `dataset`
# MAGIC (pydicom) or `pixels` (numpy). It is picklable and opens packs lazily, so it works as a
# MAGIC PyTorch `Dataset` in `DataLoader` workers as it is. Batches come in a deterministic order per
# MAGIC `(seed, epoch)` and resume at any sample.
# MAGIC
# MAGIC It reads the catalog with delta-rs from `OUT/_catalog` (path tables; runs on the driver).

# COMMAND ----------

dbutils.widgets.text("out", "/Volumes/main/imaging/iac/out", "OUT")
dbutils.widgets.text("cohort_sql", "../jobs/sql/cohort_ct_series.sql", "Cohort SQL file")
dbutils.widgets.text("batch_size", "4", "Batch size")
OUT = dbutils.widgets.get("out")
COHORT_SQL_FILE = dbutils.widgets.get("cohort_sql")
BATCH_SIZE = int(dbutils.widgets.get("batch_size"))

# COMMAND ----------

import numpy as np

from iac_spark.data import RecordDataset

with open(COHORT_SQL_FILE, encoding="utf-8") as f:
    query = f.read()
ds = RecordDataset(OUT, query, decode="pixels")
print(ds)
display(ds.table.to_pandas().head(10))

# COMMAND ----------

sample = ds[0]
print(sample["sop_instance_uid"], sample["pixels"].shape, sample["pixels"].dtype)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Batches: deterministic, resumable

# COMMAND ----------

epoch = [[item["sop_instance_uid"] for item in batch]
         for batch in ds.iter_batches(BATCH_SIZE, shuffle=True, seed=7, epoch=0)]
print([len(b) for b in epoch])
# a run that stopped after the first batch resumes with exactly the rest
rest = [[item["sop_instance_uid"] for item in batch]
        for batch in ds.iter_batches(BATCH_SIZE, shuffle=True, seed=7, epoch=0, start=BATCH_SIZE)]
assert sum(rest, []) == sum(epoch, [])[BATCH_SIZE:]

# COMMAND ----------

# MAGIC %md
# MAGIC ## A series as a volume (slices in slice order)

# COMMAND ----------

uid = ds.table.column("series_instance_uid")[0].as_py()
volume = ds.series(uid)
print(uid, volume.shape, volume.dtype)
print(f"{volume.shape[0]} slices, mean {float(np.mean(volume)):.1f}, max {int(np.max(volume))}")
