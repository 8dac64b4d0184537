"""NumPyro twins of zoo's Gaussian mixture, Poisson HMM and Gaussian Naive Bayes, for
``benchmarks/nuts.py`` (imported only in its NumPyro worker process: needs jax, numpyro and
funsor, the ``bench`` extra; never torch or zoo).

Each model takes the data and the prior settings zoo's prepared model holds (its ``config()``,
empirical centres and spreads included, passed over as plain numbers), and states the same
generative story as zoo's ``sample_globals`` plus its likelihood, with the same site names and
shapes, so that one function computes ESS and posterior means for both libraries' draws
(what differs between the twins: ``DIFFERENCES`` in ``benchmarks/nuts.py``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.contrib.funsor import config_enumerate

__all__ = ["gaussian_mixture", "poisson_hmm", "poisson_hmm_forward", "naive_bayes", "MODELS", "model"]


@config_enumerate
def gaussian_mixture(x: Any, *, config: dict[str, Any]) -> None:
    """zoo's ``GaussianMixture(K, covariance="full")``: the assignment of each point enumerated.
    With one feature there is no correlation to draw (zoo's ``has_correlations``)."""
    num_data, num_features = x.shape
    num_components = config["num_components"]
    center = jnp.asarray(config["prior_center"], dtype=x.dtype)
    spread = jnp.asarray(config["prior_spread"], dtype=x.dtype)
    weights = numpyro.sample(
        "weights", dist.Dirichlet(jnp.full((num_components,), config["weight_concentration"], dtype=x.dtype))
    )
    with numpyro.plate("components", num_components):
        locs = numpyro.sample("locs", dist.Normal(center, config["location_scale"] * spread).to_event(1))
        scales = numpyro.sample("scales", dist.LogNormal(jnp.log(spread), config["scale_log_sd"]).to_event(1))
        if num_features > 1:
            corr_cholesky = numpyro.sample(
                "corr_cholesky", dist.LKJCholesky(num_features, config["correlation_concentration"])
            )
    with numpyro.plate("data", num_data):
        # enumerated: (K, 1), left of the data plate
        assignment = numpyro.sample("assignment", dist.Categorical(weights))
        if num_features == 1:
            numpyro.sample("x", dist.Normal(locs[assignment], scales[assignment]).to_event(1), obs=x)
            return
        tril = scales[assignment][..., None] * corr_cholesky[assignment]
        numpyro.sample("x", dist.MultivariateNormal(locs[assignment], scale_tril=tril), obs=x)


def _hmm_globals(counts: Any, config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """initial (K,), transition (K, K), rates (K, 1): zoo's HMM priors for Poisson emissions."""
    num_states = config["num_states"]
    dtype = counts.dtype
    initial = numpyro.sample(
        "initial", dist.Dirichlet(jnp.full((num_states,), config["initial_concentration"], dtype=dtype))
    )
    center = jnp.asarray(config["prior_center"], dtype=dtype)  # (D,) = (1,)
    with numpyro.plate("states", num_states):
        transition = numpyro.sample(
            "transition", dist.Dirichlet(jnp.full((num_states,), config["transition_concentration"], dtype=dtype))
        )
        rates = numpyro.sample("rates", dist.LogNormal(jnp.log(center), config["rate_log_sd"]).to_event(1))
    return initial, transition, rates


def poisson_hmm(counts: Any, *, config: dict[str, Any]) -> None:
    """zoo's ``HiddenMarkovModel(K, emission="poisson")`` on one sequence of counts (T,), the
    states enumerated through ``numpyro.contrib.control_flow.scan`` (NumPyro's hmm_enum style).

    The first state is drawn from ``initial`` inside the scanned step (``where(t == 0, ...)``),
    so that every step, the first included, is one enumerated site of the scan.
    """
    initial, transition, rates = _hmm_globals(counts, config)

    @config_enumerate
    def step(carry: tuple[Any, Any], count: Any) -> tuple[tuple[Any, Any], None]:
        previous, t = carry
        probs = jnp.where(t == 0, initial, transition[previous])
        state = numpyro.sample("state", dist.Categorical(probs))
        numpyro.sample("count", dist.Poisson(rates[state, 0]), obs=count)
        return (state, t + 1), None

    scan(step, (0, 0), counts)


def poisson_hmm_forward(counts: Any, *, config: dict[str, Any]) -> None:
    """The same HMM with the states summed out by a hand-written log-space forward algorithm
    (``jax.lax.scan``) in one ``numpyro.factor``: no enumeration, no funsor."""
    import jax

    initial, transition, rates = _hmm_globals(counts, config)
    log_emission = dist.Poisson(rates[:, 0]).log_prob(counts[:, None])  # (T, K)
    log_transition = jnp.log(transition)

    def step(alpha: Any, emission: Any) -> tuple[Any, None]:
        return jax.nn.logsumexp(alpha[:, None] + log_transition, axis=0) + emission, None

    alpha, _ = jax.lax.scan(step, jnp.log(initial) + log_emission[0], log_emission[1:])
    numpyro.factor("log_likelihood", jax.nn.logsumexp(alpha))


def naive_bayes(x: Any, y: Any, *, config: dict[str, Any]) -> None:
    """zoo's ``NaiveBayes(C)`` with Gaussian features and every row labeled (y observed)."""
    num_data, num_features = x.shape
    num_classes = config["num_classes"]
    prior_loc = jnp.asarray(config["prior_loc"], dtype=x.dtype)
    prior_scale = jnp.asarray(config["prior_scale"], dtype=x.dtype)
    shape = config["precision_shape"]
    weights = numpyro.sample(
        "weights", dist.Dirichlet(jnp.full((num_classes,), config["class_concentration"], dtype=x.dtype))
    )
    with numpyro.plate("classes", num_classes, dim=-2), numpyro.plate("gaussian_features", num_features, dim=-1):
        precision = numpyro.sample("precision", dist.Gamma(shape, shape * prior_scale**2))
        loc = numpyro.sample("loc", dist.Normal(prior_loc, 1.0 / jnp.sqrt(config["loc_count"] * precision)))
    with numpyro.plate("data", num_data, dim=-1):
        numpyro.sample("y", dist.Categorical(weights), obs=y)
        numpyro.sample("x", dist.Normal(loc[y], 1.0 / jnp.sqrt(precision[y])).to_event(1), obs=x)


MODELS = {
    "gmm": gaussian_mixture,
    "hmm": poisson_hmm,
    "hmm-forward": poisson_hmm_forward,
    "naive_bayes": naive_bayes,
}


def model(name: str, config: dict[str, Any]) -> Any:
    """The model ``name`` with its prior settings bound, a function of the data arrays alone.

    Only arrays go to ``MCMC.run``: NumPyro caches its compiled sampler by the identity of the
    arrays it is run on, and a dict of numbers among the arguments (unhashable) would make a
    second ``run`` on the same data recompile everything.
    """
    return partial(MODELS[name], config=config)
