# The two commands of the README's Quick start. Both create the virtual environment when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: tour test setup clean

$(BIN)/zoo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/zoo

setup: $(BIN)/zoo

tour: setup
	$(BIN)/zoo tour --out zoo-tour

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) zoo-tour
