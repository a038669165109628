# Every target creates .venv on first use, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
# every release pinned to what the suite last ran with (the file says why); pyproject.toml keeps the ranges
CONSTRAINTS := constraints.txt

.PHONY: demo test test-all bench gpu-check py38-check lint venv clean system-tools

# Debian programs the tests use for real (a stream server to kill and freeze, a browser for the live
# view): installed where missing when we are root with apt (CI), otherwise named for you to install.
SYSTEM_TOOLS := ffmpeg chromium

# pip shows its download progress on a terminal and stays quiet in logs; each step says what it does
QUIET = $$([ -t 1 ] || echo -q)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo "==> [1/4] creating $(VENV) (a Python virtual environment)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip"
	@$(PIP) install $(QUIET) --upgrade pip -c $(CONSTRAINTS)
	@echo "==> [3/4] installing $(TORCH) (the largest download)"
	@$(PIP) install $(QUIET) $(TORCH) -c $(CONSTRAINTS)
	@echo "==> [4/4] installing edgeseg (editable) with ONNX, ONNX Runtime, OpenCV, matplotlib and the test tools"
	@$(PIP) install $(QUIET) -e '.[all,test]' $(TORCH) -c $(CONSTRAINTS)
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

# The on-device part (build from ONNX, run, ros2, Segmenter) on Python 3.8, JetPack 5.1's system Python:
# a .venv38 with the runtime requirements (no torch), then tests/test_python38.py runs the device commands
# under it. PY38 is any Python 3.8 (pyenv's, Debian's, `uv python install 3.8`).
PY38 ?= $(shell for p in $$(command -v python3.8) $$HOME/.pyenv/versions/3.8*/bin/python3.8; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))' 2>/dev/null && echo $$p && break; done)
VENV38 := .venv38
py38-check: $(STAMP)
	@test -n "$(PY38)" || { echo "py38-check: no Python 3.8 found; set PY38=/path/to/python3.8"; exit 1; }
	@test -x $(VENV38)/bin/python || $(PY38) -m venv $(VENV38)
	@$(VENV38)/bin/pip install $(QUIET) 'numpy>=1.24,<2' 'opencv-python-headless>=4.8' 'typer>=0.12' 'rich>=13' \
		'onnx>=1.15' 'onnxruntime>=1.17' 'pillow>=9' pytest
	EDGESEG_PY38=$(VENV38)/bin/python $(PY) -m pytest -q tests/test_python38.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:  # the venv, build leftovers and the default output folders (edgeseg-work/, edgeseg-demo/)
	rm -rf $(VENV) $(VENV38) edgeseg-work edgeseg-demo build dist *.egg-info .pytest_cache .ruff_cache
