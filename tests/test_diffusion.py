"""The diffusion model: its ELBO against a hand computation, its bound against an exact
likelihood, its discretised decoder. The contract checks cover it as a registered model."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

import zoo
from zoo.models.diffusion import DiscretizedNormal


def _normal_kl(mean_q: torch.Tensor, var_q: float, mean_p: torch.Tensor, var_p: float) -> torch.Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) summed over the last dim (closed form)."""
    return (0.5 * (math.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)).sum(-1)


def _schedule(num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """betas and abar of Ho et al.'s linear schedule over 1000 steps respaced to ``num_steps``."""
    fine = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    alpha_bars = fine[[round(999 * index / max(1, num_steps - 1)) for index in range(num_steps)]]
    betas = 1.0 - alpha_bars / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
    return betas.float(), alpha_bars.float()


def test_elbo_is_the_hand_computed_sum_of_kl_terms() -> None:
    """T = 3, D = 2: at the chain the forward process drew, -KL(q(z_T|x_0) || N(0, I)) - sum_t
    KL(q(z_{t-1}|z_t, x_0) || p(z_{t-1}|z_t)) + log p(x_0|z_1), with q's posterior written out
    here from the schedule; and Pyro's TraceMeanField_ELBO (what SVI minimises) is minus its sum."""
    model = zoo.models.Diffusion(num_timesteps=3, hidden_sizes=[8], image_shape=[2], init_seed=3)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1]])
    terms = model.elbo_terms(x, seed=4)
    betas, alpha_bars = _schedule(3)
    torch.testing.assert_close(model.betas, betas)
    with torch.no_grad():
        expected = -_normal_kl(alpha_bars[2].sqrt() * x, float(1 - alpha_bars[2]), torch.zeros(2), 1.0)
        for step in (3, 2):
            z = terms[f"value_z_{step}"]
            beta, alpha, alpha_bar, previous = float(betas[step - 1]), float(1 - betas[step - 1]), float(alpha_bars[step - 1]), float(alpha_bars[step - 2])
            mean_q = (math.sqrt(previous) * beta * x + math.sqrt(alpha) * (1 - previous) * z) / (1 - alpha_bar)
            var_q = beta * (1 - previous) / (1 - alpha_bar)
            mean_p = (z - beta / math.sqrt(1 - alpha_bar) * model.noise_predictor(z, step)) / math.sqrt(alpha)
            expected = expected - _normal_kl(mean_q, var_q, mean_p, beta)
        z = terms["value_z_1"]
        beta, alpha_bar = float(betas[0]), float(alpha_bars[0])
        mean = (z - beta / math.sqrt(1 - alpha_bar) * model.noise_predictor(z, 1)) / math.sqrt(1 - beta)
        expected = expected + torch.distributions.Normal(mean, math.sqrt(beta)).log_prob(x).sum(-1)
    torch.testing.assert_close(terms["elbo"].detach(), expected, rtol=1e-5, atol=1e-4)
    with pyro.poutine.block(), torch.random.fork_rng(devices=[]):
        pyro.set_rng_seed(4)
        loss = TraceMeanField_ELBO(max_plate_nesting=1).loss(model, model.forward_process, x=x)
    assert loss == pytest.approx(-float(terms["elbo"].sum()), rel=1e-5)


def _linear_gaussian_chain() -> tuple[zoo.models.Diffusion, torch.Tensor, torch.Tensor]:
    """D = 1, T = 4, no hidden layer: eps_W is affine in z, so the reverse chain is linear-Gaussian
    and p(x_0) is a Normal whose moments are propagated here. Returns the model, three points and
    their exact log p(x_0)."""
    model = zoo.models.Diffusion(num_timesteps=4, hidden_sizes=[], image_shape=[1], init_seed=0)
    points = torch.tensor([-1.5, 0.0, 0.8])
    with torch.no_grad():
        mean, variance = torch.zeros(()), torch.ones(())
        for step in range(4, 0, -1):
            offset = model.reverse_mean(torch.zeros(1), step)[0]
            slope = model.reverse_mean(torch.ones(1), step)[0] - offset
            mean, variance = slope * mean + offset, slope**2 * variance + float(model.betas[step - 1])
        exact = torch.distributions.Normal(mean, variance.sqrt()).log_prob(points)
    return model, points, exact


def test_bound_does_not_exceed_the_exact_likelihood_of_a_linear_gaussian_chain() -> None:
    """D = 1, no hidden layer: eps_W is affine in z, so the reverse chain is linear-Gaussian and
    p(x_0) is a Normal whose moments are propagated here; the ELBO averaged over 4000 chains per
    datum lies below log p(x_0) (within 3 of its standard errors), and not on it (a real gap)."""
    model, points, exact = _linear_gaussian_chain()
    with torch.no_grad():
        repeated = points.repeat_interleave(4000).unsqueeze(-1)
        bounds = model.elbo_terms(repeated, seed=0)["elbo"].reshape(3, 4000)
    average, error = bounds.mean(-1), bounds.std(-1) / math.sqrt(4000)
    assert torch.all(average <= exact + 3 * error)
    assert torch.all(average < exact - 3 * error)


def test_discretised_decoder_is_a_distribution_over_the_levels() -> None:
    loc = torch.tensor([[-1.2, -0.3, 0.4, 0.95]])
    decoder = DiscretizedNormal(loc, torch.full_like(loc, 0.2), num_levels=5)
    levels = torch.arange(5.0).unsqueeze(-1).expand(5, 4)
    per_pixel = torch.stack([DiscretizedNormal(loc[0, d : d + 1], torch.tensor([0.2]), 5).log_prob(levels[:, d : d + 1]) for d in range(4)])
    torch.testing.assert_close(per_pixel.exp().sum(-1), torch.ones(4))
    # the mass of a middle level is the Normal's mass over its bin
    normal = torch.distributions.Normal(-0.3, 0.2)
    expected = normal.cdf(torch.tensor(-0.5 + 0.25)) - normal.cdf(torch.tensor(-0.5 - 0.25))
    torch.testing.assert_close(per_pixel[1, 1].exp(), expected)
    assert decoder.sample((3,)).shape == (3, 1, 4)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"holds 0.5.*integer levels 0..16"):
        zoo.fit(zoo.models.Diffusion(num_levels=17), torch.full((4, 3), 0.5), zoo.SVI(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="beta_start <= beta_end < 1"):
        zoo.models.Diffusion(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="fixed forward noising process"):
        zoo.fit(zoo.models.Diffusion(), torch.randn(4, 2), zoo.SVI(guide="normal", num_steps=1, progress=False))
    with pytest.raises(ValueError, match=r"\(num_data, D\)"):
        zoo.models.Diffusion(image_shape=[8, 8])


@pytest.mark.slow
def test_importance_weighted_bound_lies_between_the_elbo_and_the_exact_likelihood() -> None:
    """The linear-Gaussian chain of the test above (exact log p(x_0) by propagated moments): the
    importance-weighted bound with K = 32 forward-process chains, 100 independent estimates per
    datum, is above the ELBO (the closed-form-KL ELBO averaged over 32 chains, beyond 3 standard
    errors of the difference) and not above log p(x_0) (within 3 standard errors); one chain's
    log-weight log p(x, z) - log q(z | x) (the K = 1 bound) has the ELBO's expectation."""
    model, points, exact = _linear_gaussian_chain()
    repeats, chains = 100, 32
    data = zoo.Dataset(x=points.repeat_interleave(repeats).unsqueeze(-1))
    weighted = model.log_likelihood({}, data, num_particles=chains, estimator="iwae", seed=1)[0].reshape(3, repeats)
    elbo = model.log_likelihood({}, data, num_particles=chains, seed=1000)[0].reshape(3, repeats)
    with torch.no_grad():
        one_chain = torch.stack([model.log_weight(data.x, seed=2000 + k).reshape(3, repeats) for k in range(chains)], -1)
    one_chain = one_chain.reshape(3, -1)

    def error(values: torch.Tensor) -> torch.Tensor:
        return values.std(-1) / math.sqrt(values.shape[-1])

    gap = weighted.mean(-1) - elbo.mean(-1)
    assert torch.all(gap > 3 * (error(weighted) ** 2 + error(elbo) ** 2).sqrt())
    assert torch.all(weighted.mean(-1) <= exact + 3 * error(weighted))
    # an ELBO estimate's spread over its 100 repeats understates one chain's: compare with one chain's own error
    difference = one_chain.mean(-1) - elbo.mean(-1)
    assert torch.all(difference.abs() < 4 * (error(one_chain) ** 2 + error(elbo) ** 2).sqrt())
    with pytest.raises(ValueError, match="estimator"):
        model.log_likelihood({}, data, estimator="exact")


def test_zoos_mean_field_elbo_is_pyros_in_value_and_gradient() -> None:
    """zoo's MeanFieldELBO (what SVI fits a Diffusion model with) skips log-densities it does not
    read: from the same random draws its loss and gradients equal Pyro's TraceMeanField_ELBO's;
    and on a latent site with no closed-form KL (a Laplace guide against a Normal prior) it falls
    back on log p(z) - log q(z) as Pyro does."""
    from pyro.infer import TraceMeanField_ELBO

    from zoo.infer.elbo import MeanFieldELBO

    model = zoo.models.Diffusion(num_timesteps=3, hidden_sizes=[8], image_shape=[2], init_seed=3)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1]])
    values, gradients = [], []
    for elbo in (TraceMeanField_ELBO(max_plate_nesting=1), MeanFieldELBO(max_plate_nesting=1)):
        # validation off, as in a fit's steps: the path that skips the unread log-densities
        with pyro.poutine.block(), torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
            pyro.set_rng_seed(4)
            loss = elbo.differentiable_loss(model, model.forward_process, x=x)
        values.append(loss.detach())
        gradients.append(torch.autograd.grad(loss, list(model.parameters())))
    torch.testing.assert_close(values[1], values[0])
    for mine, pyros in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(mine, pyros)

    def prior() -> None:
        pyro.sample("z", pyro.distributions.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", pyro.distributions.Normal(torch.zeros(2), 1.0).to_event(1), obs=torch.ones(2))

    def laplace_guide() -> None:
        pyro.sample("z", pyro.distributions.Laplace(torch.full((2,), 0.3), 0.5).to_event(1))

    for validation in (False, True):
        losses = []
        for elbo in (TraceMeanField_ELBO(), MeanFieldELBO()):
            with torch.random.fork_rng(devices=[]), pyro.validation_enabled(validation):
                pyro.set_rng_seed(5)
                losses.append(float(elbo.loss(prior, laplace_guide)))
        assert losses[1] == pytest.approx(losses[0], rel=1e-6)
