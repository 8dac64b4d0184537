"""Sphinx directives that write zoo's pages from the code itself, and the gallery's pictures.

* ``.. zoo-module-docstring:: zoo.models.mixture`` parses a module's docstring (a model's
  generative story and sample sites) as part of the page, its sections as sub-sections.
* ``.. zoo-model-facts:: zoo.models.GaussianMixture`` lists what a model declares: its
  command-line name, inference methods, default guide and enumerated sites.
* ``.. zoo-methods::`` and ``.. zoo-guides::`` tabulate the registered inference methods and
  SVI guides (``zoo.infer.METHODS``, ``zoo.infer.GUIDES``: what ``zoo list`` prints).
* ``.. zoo-gallery::`` lays out one card per entry of :data:`GALLERY`: a figure taken from the
  committed outputs of a notebook, linking to the rendered notebook.

Their content is reStructuredText: in a MyST page, call them inside an ``{eval-rst}`` block.

The pictures are decoded from the notebooks' outputs into ``docs/_generated/gallery`` when the
build starts (that folder is ignored by git): the notebooks stay the one source of every figure.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

HERE = Path(__file__).resolve().parent.parent
GENERATED = HERE / "_generated" / "gallery"

#: (notebook, index of the picture among the notebook's pictures, card title); the picture is
#: written as ``_generated/gallery/NOTEBOOK-INDEX.png`` (the model pages show them too).
GALLERY: tuple[tuple[str, int, str], ...] = (
    ("01_gaussian_mixture", 0, "Gaussian mixture: MAP, VI and NUTS on Old Faithful"),
    ("02_hidden_markov_model", 0, "Hidden Markov model: the Viterbi path of a time series"),
    ("03_naive_bayes", 1, "Naive Bayes: digits drawn class by class"),
    ("04_variational_autoencoder", 4, "Variational autoencoder: the codes of test digits"),
    ("04_variational_autoencoder", 7, "Semi-supervised VAE (M2): one style, every class"),
    ("05_gan_vs_vae", 0, "GAN against VAE: samples of a ring of Gaussians"),
    ("06_comparing_inference_methods", 0, "Comparing inference methods with the exact posterior"),
    ("07_generative_vs_discriminative", 0, "Generative against discriminative"),
    ("08_rare_class_augmentation", 0, "Rare-class augmentation"),
)


#: A star that unpacks a name in a shape, ``(N, *event_shape)``: reStructuredText would read it
#: as the start of an emphasis that never ends. Not a star that opens ``*emphasis*``, nor ``**``.
UNPACKING_STAR = re.compile(r"(?<![\\*\w`])\*(?=[A-Za-z_][\w.]*(?:[^\w.*]|$))")
LITERAL = re.compile(r"(``.+?``)")


def escape_unpacking_stars(line: str) -> str:
    """Escape the unpacking stars of ``line``, outside its inline literals.

    Each backslash added is paid for by one space of the next run of two or more, so the
    columns of a simple table stay where they were.
    """
    parts = LITERAL.split(line)
    escaped = "".join(part if index % 2 else UNPACKING_STAR.sub(r"\\*", part) for index, part in enumerate(parts))
    for _ in range(len(escaped) - len(line)):
        position = escaped.find("  ", escaped.rfind("\\*") + 2)
        if position < 0:
            break
        escaped = escaped[:position] + escaped[position + 1 :]
    return escaped


def process_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """autodoc: zoo's docstrings write shapes as Python does, ``(..., *event_shape)``."""
    lines[:] = [escape_unpacking_stars(line) for line in lines]


def skip_foreign_members(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """autodoc: leave out the members zoo.sklearn's estimators inherit from scikit-learn
    (``get_params``, ``set_score_request``, ...): scikit-learn documents them."""
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn"):
        return True
    return None


def notebook_pictures(path: Path) -> list[bytes]:
    """The PNG pictures in a notebook's committed outputs, in order."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    pictures = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if data:
                pictures.append(base64.b64decode("".join(data) if isinstance(data, list) else data))
    return pictures


def extract_gallery(app: Sphinx) -> None:
    """Write each gallery card's picture into docs/_generated/gallery (at builder-inited)."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    for stem, index, _ in GALLERY:
        pictures = notebook_pictures(HERE / "notebooks" / f"{stem}.ipynb")
        if index >= len(pictures):
            raise ValueError(f"the gallery wants picture {index} of {stem}.ipynb, which has {len(pictures)}")
        target = GENERATED / f"{stem}-{index}.png"
        if not target.exists() or target.read_bytes() != pictures[index]:
            target.write_bytes(pictures[index])


class _Generated(SphinxDirective):
    """A directive whose content is reStructuredText written from the code."""

    def lines(self) -> list[str]:  # pragma: no cover - every directive overrides
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.section() if self.titles else nodes.container()
        source = f"{self.get_source_info()[0]} ({self.name} {' '.join(self.arguments)})"
        nested_parse_with_titles(self.state, StringList(self.lines(), source=source), container)
        return list(container.children)

    titles = False


class ModuleDocstring(_Generated):
    required_arguments = 1
    titles = True

    def lines(self) -> list[str]:
        module = importlib.import_module(self.arguments[0])
        return [escape_unpacking_stars(line) for line in inspect.cleandoc(module.__doc__ or "").splitlines()]


def _object(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class ModelFacts(_Generated):
    required_arguments = 1

    def lines(self) -> list[str]:
        model = _object(self.arguments[0])
        enumerated = model.enumerated_sites
        enumerated_text = (
            ", ".join(f"``{site}``" for site in enumerated) if isinstance(enumerated, tuple) and enumerated
            else "one per time step (``state_0`` ... ``state_{T-1}``)" if not isinstance(enumerated, tuple)
            else "none"
        )
        return [
            f"* **Command line**: ``zoo fit {model.registry_name} ...`` (and ``zoo compare``, ``zoo select``)",
            f"* **Inference methods**: {', '.join(f'``{method}``' for method in model.methods)}",
            f"* **Default SVI guide**: ``{model.default_guide}``" if "svi" in model.methods else "* **SVI**: not taken",
            f"* **Enumerated (summed out) sites**: {enumerated_text}",
            "",
        ]


class MethodsTable(_Generated):
    def lines(self) -> list[str]:
        from zoo.infer import METHODS

        rows = [".. list-table::", "   :header-rows: 1", "", "   * - string", "     - object", "     - what it does"]
        for kind, (config, _) in METHODS.items():
            summary = (config.__doc__ or "").strip().splitlines()[0]
            rows += [f"   * - ``\"{kind}\"``", f"     - ``zoo.{config.__name__}``", f"     - {summary}"]
        return rows + [""]


class GuidesTable(_Generated):
    def lines(self) -> list[str]:
        from zoo.infer import GUIDES

        rows = [".. list-table::", "   :header-rows: 1", "", "   * - guide", "     - Pyro class", "     - the approximation"]
        for name, (guide, what) in GUIDES.items():
            rows += [f"   * - ``\"{name}\"``", f"     - ``{guide.__name__}``", f"     - {what}"]
        return rows + [""]


class Gallery(_Generated):
    option_spec = {"columns": directives.positive_int}

    def lines(self) -> list[str]:
        lines = [".. container:: zoo-gallery", ""]
        for stem, index, title in GALLERY:
            lines += [
                "   .. container:: zoo-gallery-card",
                "",
                f"      .. image:: /_generated/gallery/{stem}-{index}.png",
                f"         :alt: {title}",
                f"         :target: notebooks/{stem}.html",
                "",
                f"      :doc:`{title} <notebooks/{stem}>`",
                "",
            ]
        return lines


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", extract_gallery)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.add_directive("zoo-module-docstring", ModuleDocstring)
    app.add_directive("zoo-model-facts", ModelFacts)
    app.add_directive("zoo-methods", MethodsTable)
    app.add_directive("zoo-guides", GuidesTable)
    app.add_directive("zoo-gallery", Gallery)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
