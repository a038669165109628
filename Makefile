# Every target creates .venv on first use, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all bench gpu-check lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[all,test]' $(TORCH)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeseg demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "" 

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# TensorRT on a real GPU (FP32/FP16/INT8 engines, mIoU vs ONNX Runtime, FPS, ...): one JSON report.
# Without TensorRT or a GPU it prints one "no GPU" line and exits 0.
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py --out gpu-check.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) edgeseg-work build *.egg-info
