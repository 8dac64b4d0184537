"""How a model is fitted: one runner, ``fit``, dispatching on the method configuration.

The runner knows nothing of any particular model: it asks the model what it declares (enumerated
sites, plate nesting, supported methods, data-driven initial values) and hands it to the method.

Layers. The package is split across the layers of ``zoo`` (``tests/test_architecture.py`` holds
the table): what a ``Fit`` needs sits below :mod:`zoo.results` (:mod:`~zoo.infer.runtime`,
:mod:`~zoo.infer.evaluate`, :mod:`~zoo.infer.collapse`, :mod:`~zoo.infer.guides`,
:mod:`~zoo.infer.distributed`, and :mod:`~zoo.infer.methods`: the method configurations, which a
Fit holds and ``zoo.load`` rebuilds), and what builds a Fit sits above it (the runners
:mod:`~zoo.infer.svi`, :mod:`~zoo.infer.mcmc`, :mod:`~zoo.infer.exact`,
:mod:`~zoo.infer.adversarial`, and this package's ``fit``, which dispatches to them). So no
module imports one that imports it back, and no import hides inside a function to dodge a cycle.

One consequence of Python's packages: importing any ``zoo.infer.<module>`` first runs this file,
which imports the runners and, through them, :mod:`zoo.results`. A module below the runners
therefore imports the submodules it needs by their full name (``from zoo.infer.evaluate import
...``), never names from this package, and ``zoo/__init__.py`` imports this package before
:mod:`zoo.results`, which is then reached through the runners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.datasets.dataset import as_dataset
from zoo.infer.collapse import collapsible, global_sites, sites_named
from zoo.infer.adversarial import run_adversarial
from zoo.infer.exact import run_exact
from zoo.infer.guides import GUIDES, guide_names
from zoo.infer.mcmc import run_nuts
from zoo.infer.priors import check_priors, describe, label_symmetric
from zoo.infer.methods import CONFIGS, SVI, Adversarial, Exact, NUTS, parse_method, register_config
from zoo.infer.runtime import threads
from zoo.infer.svi import run_svi
from zoo.models.base import Model, check_data_options
from zoo.results import Fit, FitError

__all__ = ["fit", "SVI", "NUTS", "Exact", "Adversarial", "FitError", "METHODS", "GUIDES", "guide_names", "register_method"]

#: A runner: (prepared model, data, method configuration) -> Fit.
Runner = Callable[..., Fit]

#: Method kind -> (configuration class, runner). The configuration classes are those of
#: :data:`zoo.infer.methods.CONFIGS`; this table adds how each kind is run.
METHODS: dict[str, tuple[type, Runner]] = {}


def register_method(kind: str, config: type, runner: Runner) -> None:
    """Add an inference method: its frozen config class (with ``kind``) and the function running it.

    The config class joins :data:`zoo.infer.methods.CONFIGS` (so ``zoo.load`` can rebuild it)
    unless it registered itself there (a :class:`~zoo.infer.methods.MethodConfig` subclass does).
    """
    if getattr(config, "kind", None) != kind:
        raise ValueError(f"{config.__name__}.kind must be {kind!r}, the kind it is registered as")
    register_config(config)
    METHODS[kind] = (config, runner)


register_method("svi", SVI, run_svi)
register_method("nuts", NUTS, run_nuts)
register_method("exact", Exact, run_exact)
register_method("adversarial", Adversarial, run_adversarial)


def fit(
    model: Model,
    data: Any,
    method: Any = None,
    *,
    held_out: Any = None,
    fixed: dict[str, Any] | None = None,
    priors: dict[str, Any] | None = None,
    resume: Any = None,
) -> Fit:
    """Fit ``model`` to ``data`` with ``method``.

    Parameters
    ----------
    model : zoo.models.Model
        Not modified: the runner fits a copy prepared for the data, which the Fit keeps.
    data : zoo.Dataset, Tensor or numpy array
    method : zoo.SVI, zoo.NUTS, ..., or str, optional
        Default: ``zoo.SVI()`` with the model's default guide. A string is parsed as
        ``zoo.compare`` and ``zoo.select`` parse theirs (:func:`zoo.infer.methods.parse_method`):
        "svi:delta", "svi:mvn:num_steps=500", "nuts:num_chains=1", "exact".
    held_out : zoo.Dataset, Tensor or numpy array, optional
        Data not fitted, whose negative ELBO per observation SVI records after every epoch
        (``fit.history["held_out_loss"]``). SVI only.
    fixed : dict of str to array-like, optional
        Global sites held at given values (known parameters): {site name: value of the site's
        shape, inside its support}. The fit conditions on them: they are not sampled (no guide
        or sampler sees them) and appear in ``fit.draws`` and ``fit.point`` as constants. With
        every site fixed, ``fit.log_likelihood()`` is the log-likelihood at the given
        parameters. For models with a collapsed likelihood, fitted by SVI or NUTS; draws of a
        model with fixed sites are not relabelled (a fixed site breaks the label symmetry).
    priors : dict of str to pyro.distributions.Distribution, optional
        Your own prior for some global sites, in place of the model's: {site name:
        distribution}, e.g. ``{"locs": dist.Normal(0.0, 3.0)}``, broadcast to the site's shape
        and on its support. For every SVI guide (MAP included) and NUTS; ``zoo.Exact`` and
        adversarial training refuse them. Recorded in ``fit.diagnostics["priors"]``; see the
        docs page "Inference methods and guides" for shapes, label symmetry and saving.
    resume : str or path, optional
        A checkpoint written by ``zoo.SVI(checkpoint=...)``: the fit continues from it (SVI by
        Adam only; the model, data size and method must be those that wrote it).

    Returns
    -------
    zoo.Fit

    Raises
    ------
    TypeError, ValueError
        Before any work starts, for a model, data or method that cannot go together.
    zoo.FitError
        If the fit diverges (NaN loss); ``error.fit`` holds the partial fit.

    Examples
    --------
    >>> import zoo
    >>> data = zoo.datasets.load("old_faithful")
    >>> point = zoo.fit(zoo.models.GaussianMixture(2), data, "svi:delta")   # MAP, by L-BFGS
    >>> point.num_draws                              # one draw: the point
    1
    >>> fit = zoo.fit(zoo.models.GaussianMixture(2), data,
    ...               zoo.SVI(guide="mvn", num_steps=100, num_posterior_samples=100))
    >>> fit.draws["locs"].shape                      # (chain, draw, component, feature)
    torch.Size([1, 100, 2, 2])
    """
    if not isinstance(model, Model):
        raise TypeError(
            f"model must be a zoo model (e.g. zoo.models.GaussianMixture(2)), got {type(model).__name__}"
        )
    data = as_dataset(data)
    check_data_options(model, data)
    method, kind = _checked_method(model, method)
    # Gradients are enabled for the fit whatever the caller's mode (a fit inside torch.no_grad()
    # trains as well as outside it); leaving the block restores the caller's mode, on an
    # interrupt too.
    with torch.enable_grad():
        return _prepare_and_run(model, data, method, kind, held_out, fixed, priors, resume)


def _checked_method(model: Model, method: Any) -> tuple[Any, str]:
    """``method`` as a configuration (a string parsed, None the default SVI) and its kind,
    checked to be one ``model`` supports. Raises TypeError or ValueError naming ``method``."""
    if isinstance(method, str):
        method = parse_method(method)
    method = SVI() if method is None else method
    kind = getattr(method, "kind", None)
    if kind not in METHODS or not isinstance(method, CONFIGS[kind]):
        valid = ", ".join(f"zoo.{config.__name__}" for config, _ in METHODS.values())
        raise TypeError(f"method must be one of {valid}, got {type(method).__name__}")
    if kind not in model.methods:
        supported = ", ".join(model.methods)
        reason = model.refused_methods.get(kind, "")
        raise ValueError(
            f"{type(model).__name__} does not support {type(method).__name__}"
            + (f": {reason}" if reason else "")
            + f"; it supports: {supported}"
        )
    return method, kind


def _prepare_and_run(
    model: Model,
    data: Any,
    method: Any,
    kind: str,
    held_out: Any,
    fixed: dict[str, Any] | None,
    priors: dict[str, Any] | None,
    resume: Any,
) -> Fit:
    """The part of :func:`fit` after the method is resolved: prepare, validate, run."""
    # Preparation (validation, data-driven starting values) on the thread count the fit itself
    # will use: its operations are small, and on a busy machine a two-thread region waits for
    # its second thread to be scheduled (measured: ~70 ms per Naive Bayes fit at load 4 on 2
    # cores, against 0.5 ms on one thread).
    if data.observed is not None and kind == "exact":
        raise ValueError("data has missing entries (missing='mask'): zoo.Exact takes complete rows; use zoo.SVI or zoo.NUTS")
    if data.weights is not None and (not collapsible(model) or kind == "exact"):
        raise ValueError(
            "data has weights, which zoo applies to a collapsed likelihood (each datum's log-likelihood "
            f"times its weight): {type(model).__name__} fitted by {type(method).__name__} does not take them"
            + ("; use zoo.SVI or zoo.NUTS" if collapsible(model) else "")
        )
    if held_out is not None:
        if kind != "svi":
            raise ValueError(f"held_out data is scored by SVI's ELBO; {type(method).__name__} does not take it")
        held_out = as_dataset(held_out, "held_out")
    if resume is not None and kind != "svi":
        raise ValueError(f"resume: only SVI writes checkpoints; {type(method).__name__} does not take one")
    with threads(getattr(method, "num_threads", None) or model.num_threads):
        prepared = model.prepare(data)
        method.validate(prepared, data)
        if held_out is not None:
            try:
                prepared.validate(held_out)
                check_data_options(prepared, held_out)
            except (TypeError, ValueError) as error:  # the model's words say "data": name the argument
                raise type(error)(f"held_out: {error}") from None
        if fixed is not None:
            prepared.fix(_fixed_values(prepared, kind, fixed))
        if priors is not None:
            checked = check_priors(prepared, kind, priors, fixed)
            prepared.set_priors(checked, label_symmetric(prepared, checked))
    result = _run(prepared, data, method, kind, held_out, resume)
    if not prepared.priors:
        return result
    # in the user's words where given here (a refit of a fit's model keeps that model's priors)
    described = {name: describe((priors or {}).get(name, prior), prior) for name, prior in prepared.priors.items()}
    return result.replace(diagnostics=result.diagnostics | {"priors": described})


def _run(prepared: Model, data: Any, method: Any, kind: str, held_out: Any, resume: Any) -> Fit:
    """Run the method on the prepared model; fixed sites join the draws as constants."""
    run = METHODS[kind][1]
    if prepared.fixed and set(prepared.fixed) == set(global_sites(prepared)):
        # nothing left to infer: the fit is the given point, its likelihood that of the data there
        point = dict(prepared.fixed)
        draws = {name: value[None, None] for name, value in point.items()}
        return Fit(model=prepared, method=method, draws=draws, point=point, train=data, diagnostics={"fixed": True})
    options: dict[str, Any] = {} if held_out is None else {"held_out": held_out}
    if resume is not None:
        options["resume"] = resume
    result = run(prepared, data, method, **options)
    if not prepared.fixed:
        return result
    draws = result.draws
    shape = next(iter(draws.values())).shape[:2] if draws else (1, 1)
    constants = {name: value.expand(shape + value.shape) for name, value in prepared.fixed.items()}
    return result.replace(draws=draws | constants, point=result.point | prepared.fixed)


def _fixed_values(model: Model, kind: str, fixed: Any) -> dict[str, torch.Tensor]:
    """``fixed`` checked against ``model``'s global sites: {site: tensor of its shape, dtype and
    support}. Raises ValueError naming ``fixed`` (TypeError for something not a dict)."""
    sites = sites_named(model, kind, fixed, "fixed", "value")
    values = {}
    for name, given in fixed.items():
        site = sites[name]
        try:
            value = torch.as_tensor(given.detach() if isinstance(given, torch.Tensor) else given, dtype=site["value"].dtype)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"fixed[{name!r}] must be numbers: {error}") from None
        if value.shape != site["value"].shape:
            raise ValueError(f"fixed[{name!r}] must have the site's shape {tuple(site['value'].shape)}, got {tuple(value.shape)}")
        if not torch.isfinite(value).all() or not bool(site["fn"].support.check(value).all()):
            raise ValueError(f"fixed[{name!r}] lies outside the site's support ({site['fn'].support}): {value.tolist()}")
        values[name] = value
    return values
