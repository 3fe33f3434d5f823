# iac_spark — two set-up commands: `make demo` and `make test`. `make help` lists all targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_OUT  ?= demo_out
# extra arguments of `make bench`, e.g. BENCH_ARGS="--quick" or "--only scan,build --runs 5"
BENCH_ARGS ?=

.PHONY: help venv delta-jars demo test check fuzz bench bench-scan bench-build bench-read bench-text \
        bench-train bench-layouts bench-scale clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | expand -t 14

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with test + dev extras

# Delta Lake on Spark, for iac_spark.local_session(delta=True) and `pytest -m delta_spark`:
# io.delta:delta-spark_<Spark major.minor>_2.13 (Delta 4.x names the Spark line in the artifact)
# and its runtime dependencies, less the jars pyspark already ships, from Maven Central into an
# ignored cache. 4.4.0 is the newest release there for Spark 4.2 (the delta-spark 4.4.1 pip
# package has no 4.4.1 jars); bump both when .venv's pyspark moves to another major.minor.
DELTA_VERSION ?= 4.4.0
DELTA_SPARK   ?= 4.2
DELTA_JARS    ?= $(or $(IAC_SPARK_DELTA_JARS),.cache/delta-jars/$(DELTA_VERSION))
DELTA_COORD   := io.delta:delta-spark_$(DELTA_SPARK)_2.13:$(DELTA_VERSION)
MVN_DEPS      := org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# pyspark ships these under other names (jcl-over-slf4j; RoaringBitmap 1.x holds the shims)
DELTA_EXCLUDE := commons-logging:commons-logging org.roaringbitmap:shims
DELTA_EXCLUSIONS := $(foreach x,$(DELTA_EXCLUDE),<exclusion><groupId>$(word 1,$(subst :, ,$(x)))</groupId><artifactId>$(word 2,$(subst :, ,$(x)))</artifactId></exclusion>)

# resolved into $(DELTA_JARS).tmp and moved into place whole, so the stamp means complete
$(DELTA_JARS)/.complete: | $(STAMP)
	@command -v mvn >/dev/null 2>&1 || { echo "make delta-jars: Maven (mvn) is needed to fetch $(DELTA_COORD) from Maven Central: install it (e.g. apt-get install maven)" >&2; exit 1; }
	@echo "fetching $(DELTA_COORD) and its runtime dependencies into $(DELTA_JARS)"
	@rm -rf $(DELTA_JARS).tmp && mkdir -p $(DELTA_JARS).tmp
	@printf '%s\n' '<project xmlns="http://maven.apache.org/POM/4.0.0">' '<modelVersion>4.0.0</modelVersion>' \
	  '<groupId>local.iac_spark</groupId><artifactId>delta-jars</artifactId><version>0</version><packaging>pom</packaging>' \
	  '<dependencies><dependency><groupId>io.delta</groupId><artifactId>delta-spark_$(DELTA_SPARK)_2.13</artifactId>' \
	  '<version>$(DELTA_VERSION)</version><exclusions>$(DELTA_EXCLUSIONS)</exclusions>' \
	  '</dependency></dependencies>' '</project>' > $(DELTA_JARS).tmp/pom.xml
	@cd $(DELTA_JARS).tmp && mvn -q -B $(MVN_DEPS):list -DincludeScope=runtime \
	  -DoutputAbsoluteArtifactFilename=true -DoutputFile=dependencies.txt \
	  || { rm -rf $(DELTA_JARS).tmp; echo "make delta-jars: could not fetch $(DELTA_COORD) from Maven Central (no network? see Maven's output above)" >&2; exit 1; }
	@spark_jars=$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') \
	  && sed -n 's/^ *[^: ]*:\([^:]*\):.*:\(\/[^ ]*\.jar\).*$$/\1 \2/p' $(DELTA_JARS).tmp/dependencies.txt \
	  | while read -r artifact jar; do \
	      ls "$$spark_jars/$$artifact"-[0-9]*.jar >/dev/null 2>&1 || cp "$$jar" $(DELTA_JARS).tmp/ || exit 1; \
	    done
	@ls $(DELTA_JARS).tmp/delta-spark_$(DELTA_SPARK)_2.13-$(DELTA_VERSION).jar >/dev/null \
	  || { rm -rf $(DELTA_JARS).tmp; echo "make delta-jars: $(DELTA_COORD) was resolved but its jar was not copied" >&2; exit 1; }
	@touch $(DELTA_JARS).tmp/.complete && rm -rf $(DELTA_JARS) && mv $(DELTA_JARS).tmp $(DELTA_JARS)
	@echo "$(DELTA_JARS): $$(ls $(DELTA_JARS) | grep -c '\.jar$$') jars"

delta-jars: $(DELTA_JARS)/.complete  ## fetch the Delta Lake jars (Maven Central) for local_session(delta=True)

$(DEMO_DATA)/.generated: | $(STAMP)
	$(PY) -m iac_spark.testing.corpus $(DEMO_DATA)/dicom --patients 4 --ct-slices 30 --mr-slices 20 --ct-size 256 --mr-size 128 --seed 1
	$(PY) -m iac_spark.testing.textcorpus $(DEMO_DATA)/notes --patients 20 --docs-per-patient 6 --junk all --compressed $(DEMO_DATA)/notes-compressed --seed 1
	@touch $@

demo: $(STAMP) $(DEMO_DATA)/.generated  ## sample DICOM + Chinese notes, build packs on local Spark, query and verify
	$(VENV)/bin/iac-spark build $(DEMO_DATA)/dicom --out $(DEMO_OUT) --dataset demo --master "local[2]"
	$(VENV)/bin/iac-spark build $(DEMO_DATA)/notes --out $(DEMO_OUT) --dataset notes --kind text --master "local[2]"
	$(VENV)/bin/iac-spark build $(DEMO_DATA)/notes --out $(DEMO_OUT) --dataset pairs --kind text --layout clinical_text_pair --compressed $(DEMO_DATA)/notes-compressed --master "local[2]"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT modality, count(*) AS records, count(DISTINCT series_instance_uid) AS series, sum(raw_length) AS raw_bytes FROM records WHERE modality IS NOT NULL GROUP BY modality ORDER BY modality"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT doc_type, encoding, count(*) AS notes, sum(n_chars) AS chars FROM documents WHERE NOT retired GROUP BY doc_type, encoding ORDER BY doc_type, encoding"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT stage, count(*) AS n FROM errors GROUP BY stage ORDER BY stage"
	$(VENV)/bin/iac-spark sql $(DEMO_OUT) "SELECT dataset, payload_type, pack_id, num_records, num_patients, data_bytes FROM packs ORDER BY dataset, pack_id"
	$(VENV)/bin/iac-spark verify $(DEMO_OUT)

test: $(STAMP) delta-jars  ## run the whole test suite
	$(PY) -m pytest -q

check: $(STAMP)  ## ruff + mypy
	$(VENV)/bin/ruff check iac_spark tests bench
	$(VENV)/bin/ruff format --check iac_spark tests bench
	$(VENV)/bin/mypy

# the suite runs the fuzz targets derandomized with a few hundred inputs each; this runs many
# more from random seeds (a failure prints its @reproduce_failure blob)
fuzz: $(STAMP)  ## long fuzzing run (random seeds)
	IAC_FUZZ_RANDOM=1 IAC_FUZZ_EXAMPLES=$${IAC_FUZZ_EXAMPLES:-20000} $(PY) -m pytest -q -m fuzz tests/test_fuzz.py tests/test_salvage.py

bench: $(STAMP)  ## every benchmark; writes bench/RESULTS.md
	$(PY) bench/run_all.py $(BENCH_ARGS)

bench-scan: $(STAMP)  ## metadata scan benchmark (prints files/s and ratios vs baseline)
	$(PY) bench/scan.py

bench-build: $(STAMP)  ## pack build throughput vs a single-process baseline
	$(PY) bench/build.py

bench-read: $(STAMP)  ## random and batched pack reads vs reading from the zips
	$(PY) bench/read.py

bench-text: $(STAMP)  ## clinical text build vs a single-process baseline; text record codec
	$(PY) bench/text.py

bench-layouts: $(STAMP)  ## dicom_patient packs vs dicom_p10 and the zips: bytes, build, pixel reads
	$(PY) bench/layouts.py

bench-scale: $(STAMP)  ## catalog build at 10k and 100k members: per-member costs, driver memory
	$(PY) bench/scale.py

bench-train: $(STAMP)  ## training reads: RecordDataset pixels vs the zips, cohort SQL and lookup latency
	$(PY) bench/train_read.py

clean:  ## remove demo output and caches (keeps .venv)
	rm -rf $(DEMO_DATA) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache spark-warehouse
