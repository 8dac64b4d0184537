"""Every docstring example in the zoo package runs and shows what it says.

Every module under ``zoo/`` is imported and searched by doctest's ``DocTestFinder`` (module,
class, function, method and property docstrings); each docstring with ``>>>`` examples is one
test, run with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` in a temporary folder, figures drawn
by matplotlib's Agg backend. A new module's examples are covered by writing nothing; a ``>>>``
line the finder cannot reach (in a comment, a string constant, a nested function) fails
:func:`test_every_example_line_is_in_a_collected_docstring`.

Examples use small budgets (tens of steps, two epochs) so that each takes seconds, and show
stable quantities (shapes, keys, a selected number of components) rather than random numbers.
Each runs on one thread (small tensors; parallel test workers share the cores).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import zoo

PACKAGE = Path(zoo.__file__).resolve().parent
#: Modules not imported: ``python -m zoo`` runs the command line when imported.
NOT_IMPORTED = ("zoo.__main__",)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def zoo_modules() -> list[str]:
    """Every module of the package, ``zoo`` first."""
    names = [info.name for info in pkgutil.walk_packages(zoo.__path__, "zoo.")]
    return ["zoo"] + sorted(name for name in names if name not in NOT_IMPORTED)


def collect_examples() -> dict[str, doctest.DocTest]:
    """Every docstring with examples, by its doctest name (``zoo.models.vae.VAE``)."""
    finder = doctest.DocTestFinder()
    found: dict[str, doctest.DocTest] = {}
    for name in zoo_modules():
        for test in finder.find(importlib.import_module(name)):
            if test.examples:
                found[test.name] = test
    return found


EXAMPLES = collect_examples()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    test = EXAMPLES[name]
    test.globs = dict(test.globs)  # each run starts from the module's namespace, not the last run's
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    # The examples' tensors are small: one thread each, so that parallel test workers do not
    # oversubscribe the cores (as tests/test_gan.py does)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.run(test, out=report.append, clear_globs=True)
    finally:
        torch.set_num_threads(threads)
        plt.close("all")
    assert result.failed == 0, "".join(report)
    assert result.attempted == len(test.examples)


def test_every_example_line_is_in_a_collected_docstring() -> None:
    """Each ``>>>`` line of the package's source belongs to a docstring the tests above run
    (matched by text, file by file: doctest's line numbers are approximate for decorated
    objects and multi-line signatures)."""
    collected: dict[str, Counter[str]] = {}
    for test in EXAMPLES.values():
        lines = collected.setdefault(str(Path(test.filename).resolve()), Counter())
        lines.update(example.source.splitlines()[0].strip() for example in test.examples)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = Counter(
            line.strip()[4:] for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"\s*>>> ", line)
        )
        for line, count in (source - collected.get(str(path), Counter())).items():
            missing.append(f"{path.relative_to(PACKAGE.parent)}: {count} x {line}")
    assert not missing, "examples no test runs:\n" + "\n".join(missing)
    assert len(EXAMPLES) >= 25  # the docstrings with examples when this test was written
