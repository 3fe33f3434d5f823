"""The build core imports no pyspark: checked in a fresh interpreter, by what it actually loads."""

from __future__ import annotations

import json
import subprocess
import sys

ENGINE_FREE = (
    "iac_spark.inputs", "iac_spark.dicom.header", "iac_spark.dicom.dicom_json",
    "iac_spark.dicom.compat", "iac_spark.dicom.rows", "iac_spark.text", "iac_spark.text.rows",
    "iac_spark.packing", "iac_spark.packing.build", "iac_spark.packing.text",
    "iac_spark.packing.dicom_patient", "iac_spark.catalog", "iac_spark.jobs",
)  # fmt: skip

PROBE = """
import importlib, json, sys
first = None
for name in sys.argv[1:]:
    importlib.import_module(name)
    if first is None and any(m == "pyspark" or m.startswith("pyspark.") for m in sys.modules):
        first = name
print(json.dumps({"first": first, "pyspark": "pyspark" in sys.modules}))
"""


def test_core_modules_load_no_pyspark() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *ENGINE_FREE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"first": None, "pyspark": False}, result
