# iac_spark — two set-up commands: `make demo` and `make test`. `make help` lists all targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_OUT  ?= demo_out

.PHONY: help venv demo test check bench-scan bench-build bench-read clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | expand -t 14

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with test + dev extras

$(DEMO_DATA)/.generated: | $(STAMP)
	$(PY) -m iac_spark.testing.corpus $(DEMO_DATA) --patients 4 --ct-slices 30 --mr-slices 20 --ct-size 256 --mr-size 128 --seed 1
	@touch $@

demo: $(STAMP) $(DEMO_DATA)/.generated  ## generate a sample corpus, build packs on local Spark, query and verify
	$(VENV)/bin/iac-spark build $(DEMO_DATA) --out $(DEMO_OUT) --dataset demo --master "local[2]"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT modality, count(*) AS records, count(DISTINCT series_instance_uid) AS series, sum(raw_length) AS raw_bytes FROM records GROUP BY modality ORDER BY modality"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT pack_id, num_records, num_patients, data_bytes, file_bytes FROM packs ORDER BY pack_id"
	$(VENV)/bin/iac-spark verify $(DEMO_OUT)

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -q

check: $(STAMP)  ## ruff + mypy
	$(VENV)/bin/ruff check iac_spark tests bench
	$(VENV)/bin/ruff format --check iac_spark tests bench
	$(VENV)/bin/mypy

bench-scan: $(STAMP)  ## metadata scan benchmark (prints files/s and ratios vs baseline)
	$(PY) bench/scan.py

bench-build: $(STAMP)  ## pack build throughput vs a single-process baseline
	$(PY) bench/build.py

bench-read: $(STAMP)  ## random and batched pack reads vs reading from the zips
	$(PY) bench/read.py

clean:  ## remove demo output and caches (keeps .venv)
	rm -rf $(DEMO_DATA) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache spark-warehouse
