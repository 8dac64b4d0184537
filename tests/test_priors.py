"""User priors per global site (``zoo.fit(..., priors=...)``, issue 14 item 4), against closed forms.

The contract check (``tests/test_contract.py``) proves, for every registered model, that a user
prior changes the log joint and NUTS's potential by exactly its log density minus the model's
own; the catalogue (``tests/test_catalogue.py``) that bad priors are refused before any work.
Here: the posterior a fit reaches with a user prior is the one the prior implies.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

import zoo
from zoo.infer.priors import describe, label_symmetric
from zoo.models import GaussianMixture, HiddenMarkovModel
from zoo.models.base import no_relabelling

#: One known scale, a location prior far from the data: the user prior must move the posterior.
SIGMA, PRIOR_LOC, PRIOR_SD, NUM_DATA = 1.0, -1.0, 0.2, 20


def _one_gaussian() -> tuple[zoo.Dataset, dict[str, torch.Tensor]]:
    """20 draws of Normal(1, 1) in one feature, and the sites of a one-component diagonal mixture
    held at known values (its weight is 1; its scale is SIGMA): only the location is inferred."""
    generator = torch.Generator().manual_seed(0)
    x = 1.0 + SIGMA * torch.randn(NUM_DATA, 1, generator=generator)
    return zoo.Dataset(x), {"weights": torch.ones(1), "scales": torch.full((1, 1), SIGMA)}


def _conjugate_posterior(x: torch.Tensor, prior_loc: float, prior_sd: float) -> tuple[float, float]:
    """The Normal posterior of a Normal mean with known sd SIGMA under a Normal(prior_loc, prior_sd) prior."""
    precision = 1 / prior_sd**2 + len(x) / SIGMA**2
    mean = (prior_loc / prior_sd**2 + float(x.sum()) / SIGMA**2) / precision
    return mean, precision**-0.5


@pytest.mark.slow
def test_nuts_with_a_user_prior_reaches_the_conjugate_posterior() -> None:
    """NUTS's posterior mean and sd of a Normal mean (known sd) under a user Normal prior equal the
    closed-form conjugate posterior within Monte Carlo error (4 standard errors from the fit's
    own bulk ESS: sd / sqrt(ESS) for the mean, sd / sqrt(2 ESS) for the sd), and that posterior
    is many such errors away from the one under the model's own prior (so the check can fail)."""
    data, fixed = _one_gaussian()
    model = GaussianMixture(1, covariance="diag")
    method = zoo.NUTS(num_warmup=150, num_samples=400, num_chains=1, seed=0, progress=False)
    fit = zoo.fit(model, data, method, fixed=fixed, priors={"locs": dist.Normal(PRIOR_LOC, PRIOR_SD)})
    draws = fit.draws["locs"].reshape(-1).double()
    ess = float(fit.diagnostics["min_ess_bulk"])
    mean, sd = _conjugate_posterior(data.x, PRIOR_LOC, PRIOR_SD)
    assert abs(float(draws.mean()) - mean) < 4 * sd / math.sqrt(ess), (float(draws.mean()), mean, ess)
    assert abs(float(draws.std()) - sd) < 4 * sd / math.sqrt(2 * ess), (float(draws.std()), sd, ess)
    # the model's own prior of the location (read off its story), and the posterior it implies
    own = poutine.trace(fit.model.sample_globals).get_trace().nodes["locs"]["fn"].base_dist
    own_mean, _ = _conjugate_posterior(data.x, float(own.loc), float(own.scale))
    assert abs(own_mean - mean) > 20 * sd / math.sqrt(ess)


def test_map_with_a_tight_user_prior_returns_the_prior_location() -> None:
    """MAP (``svi:delta``) with a user prior of sd 1e-3 on the locations returns the prior's
    location, far from where the data would put them: the data (60 points, sd about 1.5) move
    it by at most about 60 * 1e-6 per unit of distance.
    The prior tells the components apart, so the draws are not relabelled (component 0 stays
    at its prior location)."""
    model, data = GaussianMixture.example()
    wanted = torch.tensor([[3.0, -3.0], [-2.0, 4.0]])  # far from both clusters of the data
    fit = zoo.fit(model, data, "svi:delta", priors={"locs": dist.Normal(wanted, 1e-3)})
    torch.testing.assert_close(fit.point["locs"], wanted, rtol=0, atol=2e-3)
    assert fit.model.relabel is no_relabelling


def test_variational_importance_weights_use_the_user_prior() -> None:
    """A variational fit's ``log_prior`` per draw (PSIS-LOO's importance weights) is the user
    prior's log density of the draw's locations plus the model's own priors of the other sites,
    summed from the distributions directly."""
    model, data = GaussianMixture.example()
    prior = dist.Normal(0.0, 3.0)
    fit = zoo.fit(model, data, zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=5, seed=0, progress=False),
                  priors={"locs": prior})
    own = poutine.trace(fit.model.sample_globals).get_trace().nodes
    for draw in range(5):
        values = {site: value[0, draw] for site, value in fit.draws.items()}
        expected = prior.log_prob(values["locs"]).sum() + sum(
            own[site]["fn"].log_prob(value).sum() for site, value in values.items() if site != "locs"
        )
        torch.testing.assert_close(fit.sample_stats["log_prior"][0, draw].double(), expected.double(), rtol=1e-5, atol=1e-3)


def test_label_symmetry_of_user_priors() -> None:
    """Relabelling stays for priors that do not tell labels apart (one Normal for every location;
    a sticky transition prior, the same under a permutation of rows and columns together), and
    goes for one that does."""
    model, data = GaussianMixture.example()
    prepared = model.prepare(data)
    assert label_symmetric(prepared, {"locs": dist.Normal(0.0, 3.0).expand([2, 2]).to_event(1)})
    assert not label_symmetric(prepared, {"locs": dist.Normal(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]), 1.0).to_event(1)})
    hmm, sequences = HiddenMarkovModel.example()
    sticky = dist.Dirichlet(1.0 + 5.0 * torch.eye(hmm.num_states))
    assert label_symmetric(hmm.prepare(sequences), {"transition": sticky})
    lopsided = dist.Dirichlet(torch.tensor([[6.0, 1.0], [6.0, 1.0]]))
    assert not label_symmetric(hmm.prepare(sequences), {"transition": lopsided})


def test_the_prior_is_recorded_and_survives_saving(tmp_path: object) -> None:
    """The fit names its user priors (diagnostics, repr, summary); a saved fit keeps that record,
    and its loaded model carries the model's own priors (distributions are not saved)."""
    model, data = GaussianMixture.example()
    fit = zoo.fit(model, data, "svi:delta", priors={"locs": dist.Normal(0.0, 3.0), "scales": dist.HalfNormal(2.0)})
    assert fit.diagnostics["priors"] == {"locs": "Normal(loc=0, scale=3) over (2, 2)", "scales": "HalfNormal(scale=2) over (2, 2)"}
    assert "user priors on locs, scales" in repr(fit)
    assert fit.summary(kind="stats").attrs["priors"] == fit.diagnostics["priors"]
    loaded = zoo.load(fit.save(tmp_path / "fit.zoo"))
    assert loaded.diagnostics["priors"] == fit.diagnostics["priors"]
    assert "user priors on locs" in repr(loaded)
    assert loaded.model.priors == {}
    assert all(torch.equal(loaded.draws[site], fit.draws[site]) for site in fit.draws)


def test_priors_broadcast_and_split_to_the_site_shape() -> None:
    """A scalar prior, one of the site's full shape with all dims as event dims, and one with
    the site's own batch and event dims give the same density at the same point."""
    model, data = GaussianMixture.example()
    point = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    expected = dist.Normal(0.0, 3.0).log_prob(point).sum()
    for given in (dist.Normal(0.0, 3.0), dist.Normal(0.0, 3.0).expand([2, 2]).to_event(2), dist.Normal(torch.zeros(2), 3.0).to_event(1)):
        fit = zoo.fit(model, data, "svi:delta:num_steps=1", priors={"locs": given})
        prior = fit.model.priors["locs"]
        assert (tuple(prior.batch_shape), tuple(prior.event_shape)) == ((2,), (2,))
        torch.testing.assert_close(prior.log_prob(point).sum(), expected)
    assert describe(dist.Dirichlet(torch.tensor([1.0, 2.0]))) == "Dirichlet(concentration=[1, 2]) over (2,)"
