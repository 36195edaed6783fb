# Two commands do all the set-up on a fresh machine (Python 3.10+, pip, make):
#   make quickstart   set-up + a real training run on built-in data, on CPU
#   make test         set-up + the whole test suite
#   make test-fast    the suite without launchers, several processes or SLURM (markers launcher, slurm)
VENV ?= .venv
PY := $(VENV)/bin/python
# the CPU build of torch: a plain `pip install torch` on Linux pulls a multi-GB CUDA build
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup quickstart test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,triton,plot,wandb]"
	touch $@

quickstart: setup
	$(PY) launch/recipes/quickstart.py

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not launcher and not slurm"

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) quickstart build *.egg-info
