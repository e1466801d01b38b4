# Set-up is part of every target: each creates .venv (and installs QGIS as root) when missing.
PY := .venv/bin/python
export QT_QPA_PLATFORM := offscreen
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-core test-qgis plugin lint bench clean

venv:
	bash scripts/bootstrap.sh

demo: venv
	$(PY) -m wsfusion_core.cli demo --output demo_output

test: venv
	$(PY) -m pytest tests

lint: venv
	$(PY) -m ruff check wsfusion_core training qgis_plugin tests bench

plugin:
	bash scripts/build_plugin.sh

bench: venv
	$(PY) bench/bench_fuse.py

clean:
	rm -rf dist build *.egg-info demo_output
