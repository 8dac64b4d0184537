"""The documentation site: it builds with warnings as errors, its code examples run, and it
renders in a real browser.

* The build runs ``sphinx-build -W --keep-going`` (as ``make docs``) into a temporary folder:
  a broken cross-reference, docstring or notebook fails it.
* Every ``python`` code block of the hand-written pages runs, page by page, in one namespace
  per page (as a reader would paste them); bash blocks do not, and the README's blocks, which
  the pages include, run in tests of their own (its opening example at small fit budgets).
* Headless Chromium (Debian's ``chromium`` package) opens the landing page, a model page and a
  rendered notebook through the DevTools protocol (over a pipe, so no extra package), checks
  that each has its title, that its pictures loaded and that the console stayed free of
  errors, and saves a screenshot of each into ``docs/_build/screenshots``. Without Chromium
  that check is skipped, saying how to install it.

Slow (about a minute for the build): deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCREENSHOTS = DOCS / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The flags a headless Chromium needs here (as root, on a machine with no network).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,900",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by sphinx-build -W --keep-going into a temporary folder."""
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-q",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-6000:]}"
    return out / "html"


def text_of(page: Path) -> str:
    """A built page's text: tags removed (code is split into spans), whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")).split())


# Both tests of the built site run in one worker (pytest-xdist's loadgroup) and share the
# session-scoped site: it is built once.
@pytest.mark.xdist_group("built_site")
def test_site_builds_without_warnings_and_has_every_page(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    cards = re.findall(r'class="zoo-gallery-card', index)
    assert len(cards) == 9
    for picture in ("01_gaussian_mixture-0", "04_variational_autoencoder-7"):
        assert f'src="_images/{picture}.png"' in index
        assert (site / "_images" / f"{picture}.png").stat().st_size > 1000
    for page in ("getting_started", "coming_from_sklearn", "inference", "diagnostics", "api", "add_a_model",
                 "benchmarks", "models/gaussian_mixture", "models/hidden_markov_model", "models/naive_bayes",
                 "models/vae", "models/gan", "notebooks/00_tour", "notebooks/08_rare_class_augmentation",
                 "_generated/api/zoo.sklearn.HiddenMarkovModel", "_generated/api/zoo.fit"):
        assert (site / f"{page}.html").is_file(), page
    model = text_of(site / "models" / "gaussian_mixture.html")
    for text in ("Generative story", "Sample sites", "corr_cholesky", "Label switching", "zoo fit gmm"):
        assert text in model, text
    notebook = (site / "notebooks" / "01_gaussian_mixture.html").read_text(encoding="utf-8")
    assert notebook.count("<img") >= 5  # the committed figures, rendered, not re-computed
    getting_started = text_of(site / "getting_started.html")
    assert "make tour" in getting_started and 'zoo.datasets.load("old_faithful")' in getting_started  # the README's
    api = (site / "_generated" / "api" / "zoo.sklearn.HiddenMarkovModel.html").read_text(encoding="utf-8")
    assert "decode" in api and "set_score_request" not in api  # scikit-learn's own members left out


# --------------------------------------------------------------------------- code examples
def python_blocks(path: Path) -> list[str]:
    """The ``python`` code blocks of a MyST (```python fences) or reStructuredText page."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    blocks = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^([\s*-]*)\.\. code-block:: python\s*$", line)  # list-table cells too
        if not match:
            continue
        body, indent = [], None
        for following in lines[number + 1 :]:
            if not following.strip():
                body.append("")
                continue
            width = len(following) - len(following.lstrip())
            if width <= len(match.group(1)):
                break
            indent = width if indent is None else indent
            if width < indent:
                break
            body.append(following[indent:])
        blocks.append("\n".join(body).strip() + "\n")
    return blocks


PAGES = ["getting_started.md", "inference.md", "diagnostics.md", "coming_from_sklearn.rst", "add_a_model.md"]


@pytest.mark.parametrize("page", PAGES)
def test_code_examples_of_the_pages_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in blocks:
        exec(compile(block, f"{page} example", "exec"), namespace)  # noqa: S102 - our own docs


def test_readme_coming_from_scikit_learn_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Coming from scikit-learn" example."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Coming from scikit-learn", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(blocks[0], "README example", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["labels"].shape == (272,) and namespace["score"] < 0
    assert namespace["idata"].posterior["locs"].shape == (1, 1000, 2, 2)  # 1000 draws of the guide


#: The README's fit budgets, made small: the code path is the same, only the numbers differ.
SMALL_BUDGETS = {r"num_steps=\d+": "num_steps=20", r"num_warmup=\d+": "num_warmup=10", r"num_samples=\d+": "num_samples=10"}


def test_readme_other_python_examples_run_at_small_budgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other ``python`` block of the README (the opening example: SVI, NUTS, the Fit's
    answers, a file round trip) runs as written but for its budgets (:data:`SMALL_BUDGETS`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    before, after = readme.split("## Coming from scikit-learn", 1)
    outside = before + after.split("\n## ", 1)[1]
    blocks = re.findall(r"^```python\n(.*?)^```", outside, flags=re.S | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for number, block in enumerate(blocks):
        for pattern, small in SMALL_BUDGETS.items():
            block = re.sub(pattern, small, block)
        namespace: dict[str, Any] = {"__name__": "__readme__"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ten NUTS draws do not mix, twenty SVI steps do not converge
            exec(compile(block, f"README example {number}", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "gmm.zoo").is_file()


def test_command_lines_of_getting_started_parse() -> None:
    """The ``zoo`` command lines of Getting started name real sub-commands and options (parsed,
    not run: they fit at full budgets; tests/test_cli_data.py runs each form on real files)."""
    from zoo.cli import build_parser

    text = (DOCS / "getting_started.md").read_text(encoding="utf-8")
    bash = "\n".join(re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M))
    lines = [line.split() for line in bash.splitlines() if line.startswith("zoo ")]
    assert len(lines) >= 5
    parser = build_parser()
    for words in lines:
        arguments = parser.parse_args(words[1:])
        assert arguments.data and arguments.handler.__name__ == f"command_{words[1]}"


def test_python_blocks_reads_both_formats() -> None:
    rst = python_blocks(DOCS / "coming_from_sklearn.rst")
    assert any("from hmmlearn.hmm import GaussianHMM" in block for block in rst)
    assert any(block.startswith("from zoo.sklearn import HiddenMarkovModel") for block in rst)
    assert all("code-block" not in block for block in rst)
    assert any("zoo.fit(zoo.models.GaussianMixture(2), frame" in block for block in python_blocks(DOCS / "getting_started.md"))


# --------------------------------------------------------------------------- a real browser
class DevTools:
    """A tiny client of Chromium's DevTools protocol over ``--remote-debugging-pipe``.

    Chromium reads commands on its file descriptor 3 and writes replies and events on 4, each
    message JSON ended by a NUL byte: no websocket library needed.
    """

    def __init__(self, profile: Path) -> None:
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()

        def descriptors() -> None:  # in the child: the pipes become its fds 3 and 4, kept by exec
            commands, replies = os.dup(commands_read), os.dup(replies_write)  # in case either is 3 or 4
            os.dup2(commands, 3)
            os.dup2(replies, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        # close_fds=False: subprocess would otherwise close fds 3 and 4 after preexec_fn
        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            preexec_fn=descriptors, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        command: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = self.session
        os.write(self.commands, json.dumps(command).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, limit: int = 10_000) -> None:
        for _ in range(limit):
            if any(message.get("method") == event for message in self.events):
                return
            self.events.append(self._message())
        raise RuntimeError(f"no {event}")

    def evaluate(self, expression: str) -> Any:
        reply = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        return reply["result"].get("value")

    def console_errors(self) -> list[str]:
        errors = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(argument.get("value", argument.get("description"))) for argument in params["args"]))
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
        return errors

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def screenshot(self, path: Path, top: float = 0.0) -> None:
        """A 1280 x 900 picture of the page from ``top`` (CSS pixels) down."""
        clip = {"x": 0, "y": max(0.0, top), "width": 1280, "height": 900, "scale": 1}
        data = self.send("Page.captureScreenshot", session=True, format="png", clip=clip, captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        self.process.wait(timeout=30)
        os.close(self.commands)
        os.close(self.replies)


PAGES_TO_SEE = [
    ("index.html", "zoo", "landing"),
    ("models/gaussian_mixture.html", "Gaussian mixture", "model_page"),
    ("notebooks/01_gaussian_mixture.html", "A Gaussian mixture on Old Faithful", "notebook"),
]


@pytest.mark.xdist_group("built_site")
def test_pages_render_in_headless_chromium(site: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed: `apt-get install -y chromium` (Debian) runs this check")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = DevTools(Path(profile))
        try:
            for page, title, name in PAGES_TO_SEE:
                browser.open((site / page).as_uri())
                assert title in browser.evaluate("document.title"), page
                assert browser.evaluate("document.querySelector('h1') !== null"), page
                pictures = browser.evaluate(
                    "Array.from(document.images).map(i => [i.currentSrc, i.complete && i.naturalWidth > 0])"
                )
                figures = [source for source, _ in pictures if "/_images/" in source]
                assert figures, f"{page} shows no figure"
                broken = [source for source, loaded in pictures if not loaded]
                assert not broken, f"{page}: pictures that did not load: {broken}"
                assert browser.console_errors() == [], f"{page}: console errors"
                top = 0.0
                if name == "notebook":  # show a figure of the notebook, not only its first lines
                    top = browser.evaluate(
                        "document.querySelector('.cell_output img').getBoundingClientRect().top + window.scrollY - 150"
                    )
                browser.screenshot(SCREENSHOTS / f"{name}.png", top=top)
                assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
        finally:
            browser.close()
