# Two entry points: `make demo` (environment + sample store + zdu on it) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ZDU    := $(VENV)/bin/zdu
STAMP  := $(VENV)/.installed
DEMO   := build/demo.zarr

.PHONY: demo test lint mutate clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# The CPU build of torch first: a plain `torch` requirement would pull GBs of CUDA wheels.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[all,test]"
	touch $(STAMP)

# Headless Chromium for the figure tests (zarr_dask_utils.testing.browser): Debian's package,
# installed once; a machine without apt-get stops here with what to do.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$ZDU_CHROMIUM" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make chromium: Chromium is missing and there is no apt-get to install Debian's" \
			"'chromium': install Chromium by hand and set ZDU_CHROMIUM to its path." >&2; exit 1; fi; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && \
		$$SUDO apt-get install -y -q chromium; } || { \
		echo "make chromium: apt-get could not install 'chromium' (see above)." >&2; exit 1; }

demo: $(STAMP)
	rm -rf $(DEMO)
	$(PY) -m zarr_dask_utils.testing.demo $(DEMO)
	@echo "\n== zdu info (real documents, not the stale consolidated copy) =="
	$(ZDU) info $(DEMO) --no-progress
	@echo "\n== zdu validate: finds the problems (exit code 1) =="
	-$(ZDU) validate $(DEMO) --no-progress
	@echo "\n== zdu repair: dry run, says what it would do =="
	-$(ZDU) repair $(DEMO) --no-progress
	@echo "\n== zdu repair --apply: writes, keeps backups =="
	$(ZDU) repair $(DEMO) --apply --no-progress
	@echo "\n== zdu validate again: healthy (exit code 0) =="
	$(ZDU) validate $(DEMO) --no-progress
	@echo "\n== zdu doctor: sizes, chunking, compression (the demo's chunks are tiny: exit code 1) =="
	-$(ZDU) doctor $(DEMO) --no-progress

test: $(STAMP) chromium lint
	$(PY) -m pytest tests notebooks --nbmake --nbmake-timeout=300 \
		--cov=zarr_dask_utils --cov-report=term-missing --cov-fail-under=90 --durations=30

# Mutation check (on demand, not in CI, ~20 min): hand-listed mutants applied to a temporary
# copy of the repository, the listed tests run against each; prints the kill rate.
mutate: $(STAMP)
	$(PY) scripts/mutate.py

# Guards: ruff lint + format, mypy (strict on _core, see pyproject). `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check zarr_dask_utils tests benchmarks scripts deploy
	$(VENV)/bin/ruff format --check zarr_dask_utils tests benchmarks scripts deploy
	$(VENV)/bin/mypy zarr_dask_utils

clean:
	rm -rf build .coverage .coverage.* htmlcov .pytest_cache
