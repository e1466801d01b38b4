# Set-up is part of every target: each creates .venv (and installs QGIS as root) when missing.
PY := .venv/bin/python
export QT_QPA_PLATFORM := offscreen
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-core test-qgis plugin lint bench clean

venv:
	bash scripts/bootstrap.sh

demo: venv
	$(PY) -m wsfusion_core.cli demo --output demo_output

# Core tests and QGIS tests run in separate pytest processes (pytest-qgis starts a QgsApplication
# at start-up); both always run, and make fails if either fails.
test: venv
	@rc=0; $(MAKE) --no-print-directory lint || rc=1; \
	$(MAKE) --no-print-directory test-core || rc=1; \
	$(MAKE) --no-print-directory test-qgis || rc=1; exit $$rc

test-core: venv
	$(PY) -m pytest -p no:pytest_qgis --ignore=tests/qgis tests

test-qgis: venv
	$(PY) -m pytest tests/qgis

lint: venv
	@rc=0; $(PY) -m ruff check wsfusion_core training qgis_plugin tests bench scripts || rc=1; \
	$(PY) -m mypy || rc=1; exit $$rc

plugin:
	bash scripts/build_plugin.sh

bench: venv
	$(PY) bench/bench_fuse.py

clean:
	rm -rf dist build *.egg-info demo_output
