# The two commands of the README's Quick start (and `make docs`). Each creates the virtual environment when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: tour test docs setup clean

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

# The documentation site, into docs/_build/html (open docs/_build/html/index.html). Warnings
# are errors, as in tests/test_docs.py; the notebooks are rendered from their committed outputs.
docs: setup
	$(BIN)/python -m sphinx -b html -W --keep-going docs docs/_build/html
	@echo "Built docs/_build/html/index.html"

clean:
	rm -rf $(VENV) zoo-tour docs/_build docs/_generated
