"""A catalogue of bad inputs and faults, run against every registered model and every method it
supports (issue 13). A new model or method is covered by writing nothing: the cases are built
from the registry, each model's ``examples()`` and the methods it declares, as the contract
checks are.

Each bad input must raise a clear TypeError or ValueError (its message naming what was wrong)
*before any work*: the evidence is counters on the work itself, the method's runner (for
``zoo.fit``) and the evaluations behind a Fit's answers (simulation, likelihood, ArviZ, the file
writer), none of which may have been called. Each fault (a diverging fit, Ctrl-C during
training, a changed file, a fit inside ``torch.no_grad()``) must be survived: a FitError holding
a usable partial fit, an interrupted fit, a refused file, and the session as it was.

Run with ``-s`` to see the figures (cases, clear errors before work, unclear, silently
accepted, faults survived) printed at the end of the module.
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

import zoo
import zoo.results
from zoo.infer import METHODS, collapse, optimizers
from zoo.infer.evaluate import global_site_shapes
from zoo.models import registry

#: (model name, method kind): every method every registered model supports, on its first example.
PAIRS = [(name, kind) for name in registry.names() for kind in registry.get(name).methods if kind in METHODS]

#: The outcome of every case: "clear" (refused before work, clearly), "unclear", "accepted",
#: "late" (refused after work started), "survived", "broken".
OUTCOMES: collections.Counter[str] = collections.Counter()
UNCLEAR: list[str] = []


def quick(kind: str, **options: Any) -> Any:
    """The method ``kind`` at the smallest budget that runs it end to end."""
    if kind == "svi":
        # jit=False: compiling the ELBO (M2, the VAE) costs seconds per fit and is not what is tested here
        return zoo.SVI(**{"num_steps": 3, "num_posterior_samples": 4, "progress": False, "jit": False, **options})
    if kind == "nuts":
        return zoo.NUTS(**{"num_warmup": 2, "num_samples": 3, "num_chains": 1, "initialization": "model", "progress": False, **options})
    if kind == "exact":
        return zoo.Exact(**{"num_posterior_samples": 4, **options})
    if kind == "adversarial":
        return zoo.Adversarial(**{"num_steps": 3, "batch_size": 8, "progress": False, **options})
    return METHODS[kind][0](**options)


#: The field of each method that counts its work (a budget).
BUDGET = {"svi": "num_steps", "nuts": "num_samples", "exact": "num_posterior_samples", "adversarial": "num_steps"}


@functools.cache
def example(name: str, kind: str | None = None) -> tuple[zoo.models.Model, zoo.Dataset]:
    """The model's first example; for ``zoo.Exact``, which takes labeled rows only, its labeled
    rows where the example has unlabeled ones. Cached: zoo.fit does not modify the model it is given."""
    model, data = registry.get(name).examples()[0]
    if kind == "exact" and data.y is not None and bool((data.y < 0).any()):
        data = data.rows(torch.nonzero(data.y >= 0).reshape(-1))
    return model, data


_FITS: dict[tuple[str, str], zoo.Fit] = {}


def fitted(name: str, kind: str) -> zoo.Fit:
    """One quick fit per pair, shared by the cases that ask things of a Fit; made inside
    ``torch.no_grad()`` (a fault of its own: zoo.fit must enable gradients itself)."""
    if (name, kind) not in _FITS:
        model, data = example(name, kind)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # three NUTS draws do not mix
            _FITS[name, kind] = zoo.fit(model, data, quick(kind))
            assert not torch.is_grad_enabled()
    return _FITS[name, kind]


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    total = sum(OUTCOMES.values())
    print(f"\n\ncatalogue: {total} cases over {len(PAIRS)} model/method pairs")
    for outcome in ("clear", "unclear", "accepted", "late", "survived", "broken"):
        print(f"  {outcome:<9} {OUTCOMES[outcome]}")
    for line in UNCLEAR:
        print(f"  unclear: {line}")


class Work:
    """Counters on the work a call may start: the method runners and a Fit's evaluations."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        for kind, (config, runner) in list(METHODS.items()):
            monkeypatch.setitem(METHODS, kind, (config, self.counting(runner)))
        for name in ("simulate", "pointwise_log_likelihood", "inference_data", "posterior_marginals",
                     "discrete_values", "write_record", "arviz_summary"):
            if hasattr(zoo.results, name):
                monkeypatch.setattr(zoo.results, name, self.counting(getattr(zoo.results, name)))

    def counting(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*arguments: Any, **options: Any) -> Any:
            self.calls += 1
            return function(*arguments, **options)

        return counted


def refused(call: Callable[[], Any], work: Work, words: tuple[str, ...], label: str) -> None:
    """Run a bad ``call``: it must raise TypeError/ValueError naming one of ``words``, with no
    work started. Records the outcome."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except (TypeError, ValueError) as error:
        message = str(error)
        if work.calls:
            OUTCOMES["late"] += 1
            pytest.fail(f"{label}: refused only after work started ({type(error).__name__}: {message})")
        if not any(word.lower() in message.lower() for word in words):
            OUTCOMES["unclear"] += 1
            UNCLEAR.append(f"{label}: {type(error).__name__}: {message}")
            pytest.fail(f"{label}: unclear error, naming none of {words}: {type(error).__name__}: {message}")
        OUTCOMES["clear"] += 1
        return
    except Exception as error:  # noqa: BLE001 - any other type is the finding
        OUTCOMES["unclear"] += 1
        UNCLEAR.append(f"{label}: {type(error).__name__}: {error}")
        pytest.fail(f"{label}: raised {type(error).__name__}, not TypeError/ValueError: {error}")
    OUTCOMES["accepted"] += 1
    pytest.fail(f"{label}: silently accepted")


# ---------------------------------------------------------------------- bad method arguments
BAD_SEEDS = [-1, 2**64, 1.5, "0", True]
BAD_COUNTS = [0, -1, 2.5, "10", None]


@pytest.mark.parametrize("name, kind", PAIRS)
def test_bad_method_arguments_are_refused_before_work(name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    work = Work(monkeypatch)
    for seed in BAD_SEEDS:
        refused(lambda: quick(kind, seed=seed), work, ("seed",), f"{name}/{kind} seed={seed!r}")
    budget = BUDGET.get(kind)
    if budget:
        for count in BAD_COUNTS:
            refused(lambda: quick(kind, **{budget: count}), work, (budget,), f"{name}/{kind} {budget}={count!r}")
    refused(lambda: quick(kind, no_such_option=1), work, ("no_such_option",), f"{name}/{kind} unknown option")
    model, data = example(name, kind)
    refused(lambda: zoo.fit(model, data, "nope"), work, ("nope", "method"), f"{name}/{kind} method 'nope'")
    has_draws = bool(global_site_shapes(model.prepare(data)))  # a VAE keeps no posterior draws
    if kind in ("svi", "exact") and has_draws:
        refused(lambda: zoo.fit(model, data, quick(kind, num_posterior_samples=10**10)), work,
                ("num_posterior_samples",), f"{name}/{kind} 10**10 posterior draws")
    if kind == "nuts" and has_draws:
        refused(lambda: zoo.fit(model, data, quick(kind, num_samples=10**9, num_chains=10)), work,
                ("num_samples",), f"{name}/{kind} 10**10 draws")


# ---------------------------------------------------------------------- bad data
def bad_data(data: zoo.Dataset) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(label, data, words one of which the error must name) for data no model can take."""
    x = data.x
    infinite = x.clone()
    infinite.view(-1)[0] = math.inf
    return [
        ("infinite value", infinite, ("infinite", "NaN")),
        ("empty", x[:0], ("empty",)),
        ("meta tensor", torch.zeros(x.shape, device="meta"), ("meta",)),
        ("a string", "data.csv", ("data",)),
        ("a single number", 3.0, ("number", "data")),
        ("values of 1e18", x * 1e18 + 1e18, ("Standardise",)),
        ("float64 of 1e300", x.double() * 1e300 + 1e300, ("float32",)),
        ("complex numbers", x.to(torch.complex64), ("dtype", "numbers")),
    ]


@pytest.mark.parametrize("name, kind", PAIRS)
def test_bad_data_is_refused_before_work(name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = example(name, kind)
    work = Work(monkeypatch)
    for label, bad, words in bad_data(data):
        refused(lambda: zoo.fit(model, bad, quick(kind)), work, words, f"{name}/{kind} data: {label}")
    if kind != "svi":
        refused(lambda: zoo.fit(model, data, quick(kind), held_out=data), work, ("held_out",), f"{name}/{kind} held_out")
    refused(lambda: zoo.fit("gmm", data, quick(kind)), work, ("model",), f"{name}/{kind} model given as a string")


# ---------------------------------------------------------------------- bad priors
def bad_priors(model: zoo.models.Model) -> list[tuple[str, Any, Any, tuple[str, ...]]]:
    """(label, priors, fixed, words one of which the error must name) for ``zoo.fit(...,
    priors=...)`` on the model's first global site: no model can take these."""
    name, site = next(iter(collapse.global_site_nodes(model).items()))
    support = site["fn"].support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    elsewhere = dist.LogNormal(0.0, 1.0) if support is constraints.real else dist.Normal(0.0, 1.0)
    return [
        ("not a dict", [dist.Normal(0.0, 1.0)], None, ("priors must be a dict",)),
        ("unknown site", {"no_such_site": dist.Normal(0.0, 1.0)}, None, ("no_such_site",)),
        ("a number", {name: 3.0}, None, ("distribution",)),
        ("a torch.distributions one", {name: torch.distributions.Normal(0.0, 1.0)}, None, ("pyro.distributions",)),
        ("a shape that does not broadcast", {name: dist.Normal(0.0, 1.0).expand(tuple(site["value"].shape) + (3,))}, None, ("shape",)),
        ("another support", {name: elsewhere}, None, ("support",)),
        ("a fixed site", {name: site["fn"]}, {name: site["value"]}, ("fixed",)),
    ]


@pytest.mark.parametrize("name, kind", PAIRS)
def test_bad_priors_are_refused_before_work(name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad user priors, and any prior where the method does not run the model's global story
    (closed-form updates, adversarial training, a model with no collapsed likelihood)."""
    model, data = example(name, kind)
    work = Work(monkeypatch)
    label = f"{name}/{kind}"
    prepared = model.prepare(data)
    if kind not in ("svi", "nuts") or not collapse.collapsible(prepared):
        refused(lambda: zoo.fit(model, data, quick(kind), priors={"anything": dist.Normal(0.0, 1.0)}), work, ("priors",),
                f"{label} priors where none can apply")
        return
    for case, priors, fixed, words in bad_priors(prepared):
        refused(lambda: zoo.fit(model, data, quick(kind), priors=priors, fixed=fixed), work, words, f"{label} priors: {case}")


# ---------------------------------------------------------------------- bad calls on a Fit
@pytest.mark.parametrize("name, kind", PAIRS)
def test_bad_calls_on_a_fit_are_refused_before_work(name: str, kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    fit = fitted(name, kind)
    model = fit.model
    work = Work(monkeypatch)
    label = f"{name}/{kind}"
    if model.capability("sample"):
        for count in (0, -1, 2.5, "3"):
            refused(lambda: fit.sample(count), work, ("num_samples",), f"{label} sample({count!r})")
        for seed in BAD_SEEDS:
            refused(lambda: fit.sample(2, seed=seed), work, ("seed",), f"{label} sample(seed={seed!r})")
        refused(lambda: fit.sample(2, no_such_option=1), work, ("no_such_option",), f"{label} sample(no_such_option=1)")
        refused(lambda: fit.sample(10**11), work, ("num_samples",), f"{label} sample(10**11)")
    for label_data, bad, words in bad_data(fit.train)[:5]:
        if model.capability("log_prob"):
            refused(lambda: fit.log_prob(bad), work, words, f"{label} log_prob({label_data})")
        refused(lambda: fit.to_arviz(bad), work, words, f"{label} to_arviz({label_data})")
    if model.capability("log_prob"):
        for method in (fit.log_prob, fit.log_likelihood):
            refused(lambda: method(no_such_option=1), work, ("no_such_option",), f"{label} {method.__name__}(no_such_option=1)")
    if fit.draws:
        refused(lambda: fit.summary(no_such_option=1), work, ("no_such_option",), f"{label} summary(no_such_option=1)")
    if model.capability("discrete"):
        for count in (0, -1, 2.5):
            refused(lambda: fit.marginals(num_draws=count), work, ("num_draws",), f"{label} marginals(num_draws={count!r})")
        refused(lambda: fit.discrete(temperature=5), work, ("temperature",), f"{label} discrete(temperature=5)")
    for seed in (-1, 2**64):
        refused(lambda: fit.posterior_predictive(seed=seed), work, ("seed",), f"{label} posterior_predictive(seed={seed})")
    refused(lambda: fit.save(tmp_path), work, ("directory",), f"{label} save(a directory)")
    refused(lambda: fit.save(tmp_path / "missing" / "fit.zoo"), work, ("does not exist",), f"{label} save(missing folder)")
    refused(lambda: fit.save(3), work, ("path",), f"{label} save(3)")
    if model.capability("log_prob"):
        # an unknown keyword's refusal lists the density's options, each of which is taken
        with pytest.raises(TypeError, match="'no_such_option'; it takes: ") as refusal:
            fit.log_prob(no_such_option=1)
        listed = str(refusal.value).split("it takes: ", 1)[1]
        defaults = {name: parameter.default for name, parameter in inspect.signature(model.log_likelihood).parameters.items()}
        rows = fit.train.subset(list(range(2)))
        for option in [] if listed == "none" else listed.split(", "):
            assert torch.isfinite(fit.log_prob(rows, **{option: defaults[option]})).all(), option


# ---------------------------------------------------------------------- faults
def session_state() -> tuple[Any, ...]:
    import pyro

    return (torch.is_grad_enabled(), torch.get_num_threads(), torch.random.get_rng_state(), sorted(pyro.get_param_store().keys()))


def same_session(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    return before[0] == after[0] and before[1] == after[1] and torch.equal(before[2], after[2]) and before[3] == after[3]


def usable(fit: zoo.Fit) -> bool:
    """Finite draws, and a finite log density where the model has one."""
    if not all(bool(torch.isfinite(value).all()) for value in fit.draws.values()):
        return False
    return not fit.model.capability("log_prob") or bool(torch.isfinite(fit.log_prob()).all())


def survived(label: str, outcome: bool, why: str = "") -> None:
    OUTCOMES["survived" if outcome else "broken"] += 1
    assert outcome, f"{label}: {why}"


DIVERGING = {
    "svi": {"learning_rate": 1e10},
    "adversarial": {"generator_learning_rate": 1e10, "discriminator_learning_rate": 1e10},
}


@pytest.mark.parametrize("name, kind", [pair for pair in PAIRS if pair[1] in DIVERGING])
def test_a_diverging_fit_ends_in_a_fit_error_with_a_usable_partial_fit(name: str, kind: str) -> None:
    model, data = example(name, kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # two steps: the first update diverges (the failure shows at step 1); more cost minutes
            # for a Flow, whose steps at such parameters take seconds each
            result = zoo.fit(model, data, quick(kind, num_steps=2, **DIVERGING[kind]))
    except zoo.FitError as error:
        survived(f"{name}/{kind} diverging", error.fit is not None and usable(error.fit), "error.fit missing or not finite")
        return
    survived(f"{name}/{kind} diverging", usable(result), "a fit that did not diverge is not finite")


def interrupting(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the second step of training (or NUTS's first chain, in warm-up) raise KeyboardInterrupt."""
    from zoo.infer import mcmc

    calls = collections.Counter()

    def after_one(original: Callable[..., Any]) -> Callable[..., Any]:
        def step(*arguments: Any, **options: Any) -> Any:
            calls["steps"] += 1
            if calls["steps"] == 2:
                raise KeyboardInterrupt
            return original(*arguments, **options)

        return step

    if kind == "nuts":
        monkeypatch.setattr(mcmc, "_sample_chain", after_one(mcmc._sample_chain))
    else:
        monkeypatch.setattr(optimizers.Adam, "step", after_one(optimizers.Adam.step))
        monkeypatch.setattr(optimizers.LBFGS, "step", after_one(optimizers.LBFGS.step))


@pytest.mark.parametrize("name, kind", [pair for pair in PAIRS if pair[1] != "exact"])
def test_ctrl_c_during_training_returns_what_was_done_and_leaves_the_session(name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = example(name, kind)
    interrupting(kind, monkeypatch)
    method = quick(kind, num_chains=2) if kind == "nuts" else quick(kind, num_steps=10)
    before = session_state()
    outcome, why = True, ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = zoo.fit(model, data, method)
        outcome, why = result.interrupted and usable(result), "the interrupted fit is not marked or not finite"
    except KeyboardInterrupt:
        pass  # nothing was completed: acceptable, provided the session is as it was
    except zoo.FitError as error:
        outcome, why = error.fit is not None and usable(error.fit), str(error)
    survived(f"{name}/{kind} Ctrl-C", outcome and same_session(before, session_state()), why or "the session changed")


@pytest.mark.parametrize("name, kind", PAIRS)
def test_a_fit_inside_no_grad_works(name: str, kind: str) -> None:
    survived(f"{name}/{kind} no_grad", usable(fitted(name, kind)) and torch.is_grad_enabled())


@pytest.mark.parametrize("name, kind", PAIRS)
def test_files_round_trip_exactly_and_a_changed_bit_is_refused(name: str, kind: str, tmp_path: Any) -> None:
    fit = fitted(name, kind)
    path = fit.save(tmp_path / "fit.zoo")
    loaded = zoo.load(path)
    same = set(loaded.draws) == set(fit.draws) and all(torch.equal(loaded.draws[site], fit.draws[site]) for site in fit.draws)
    if fit.model.capability("log_prob") and same:
        same = torch.equal(loaded.log_prob(), fit.log_prob())
    survived(f"{name}/{kind} round trip", same, "the loaded fit differs")
    payload = torch.load(path, weights_only=True)
    group = "draws" if fit.draws else "model_state"
    tensor = next(value for value in payload[group].values() if value.is_floating_point() and value.numel())
    tensor.view(torch.int32).reshape(-1)[0] ^= 1 << 3
    torch.save(payload, path)
    try:
        zoo.load(path)
    except ValueError as error:
        survived(f"{name}/{kind} changed bit", "checksum" in str(error), str(error))
        return
    survived(f"{name}/{kind} changed bit", False, "a changed file loaded")
