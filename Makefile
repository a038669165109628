# Every target creates .venv on first use, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all bench gpu-check lint venv clean system-tools

# Debian programs the tests use for real (a stream server to kill and freeze, a browser for the live
# view): installed where missing when we are root with apt (CI), otherwise named for you to install.
SYSTEM_TOOLS := ffmpeg chromium

# pip shows its download progress on a terminal and stays quiet in logs; each step says what it does
QUIET = $$([ -t 1 ] || echo -q)

$(STAMP): pyproject.toml
	@echo "==> [1/4] creating $(VENV) (a Python virtual environment)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip"
	@$(PIP) install $(QUIET) --upgrade pip
	@echo "==> [3/4] installing $(TORCH) (the largest download)"
	@$(PIP) install $(QUIET) $(TORCH)
	@echo "==> [4/4] installing edgeseg (editable) with ONNX, ONNX Runtime, OpenCV, matplotlib and the test tools"
	@$(PIP) install $(QUIET) -e '.[all,test]' $(TORCH)
	@touch $(STAMP)
	@echo "==> $(VENV) is ready"

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeseg demo

system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> installing$$missing (Debian packages the tests run for real)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	else \
		echo "==> note:$$missing not installed; their tests use a Python stand-in or skip (sudo apt-get install$$missing)"; \
	fi

test: $(STAMP) system-tools
	$(PY) -m pytest -q

test-all: $(STAMP) system-tools
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

clean:  # the venv, build leftovers and the default output folders (edgeseg-work/, edgeseg-demo/)
	rm -rf $(VENV) edgeseg-work edgeseg-demo build dist *.egg-info .pytest_cache .ruff_cache
