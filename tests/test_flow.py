"""The normalizing flow: its density against independent computations, its refusals.

The contract checks (tests/test_contract.py) cover the flow as a registered model; these check
what is particular to a change-of-variables density.
"""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.models.flow import LAYERS


def _flow(layer: str) -> zoo.models.Flow:
    """A built flow on 2-D data with random weights and a non-trivial outer affine map.

    The weights are Pyro's random initial ones scaled by 0.2: the raw initial splines have
    slopes so steep that a grid would need far finer cells to integrate them.
    """
    flow = zoo.models.Flow(num_layers=3, layer=layer, hidden_sizes=[16], image_shape=[2], init_seed=1)
    with torch.no_grad():
        flow.data_loc.copy_(torch.tensor([0.5, -1.0]))
        flow.data_scale.copy_(torch.tensor([0.7, 1.5]))
        for parameter in flow.parameters():
            parameter.mul_(0.2)
    return flow


@pytest.mark.parametrize(
    "layer", [pytest.param(layer, marks=pytest.mark.slow) if "spline" in layer else layer for layer in LAYERS]
)
def test_density_integrates_to_one_on_a_grid(layer: str) -> None:
    """Midpoint quadrature of exp(log_prob) over [-6, 6]^2 (cells of 0.075): the mass outside is
    that of a standard Normal's tails pushed through the map, far below the tolerance; the
    density is not the outer affine map's Gaussian alone (the layers do something)."""
    flow = _flow(layer)
    edges = torch.linspace(-6.0, 6.0, 161)
    step = float(edges[1] - edges[0])
    centres = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    log_density = flow.log_likelihood({}, zoo.Dataset(x=grid))[0]
    mass = float(log_density.exp().sum()) * step * step
    gaussian = torch.distributions.Normal(flow.data_loc, flow.data_scale).log_prob(grid).sum(-1)
    assert float((log_density - gaussian).abs().max()) > 0.1
    assert abs(mass - 1.0) < 1e-2


@pytest.mark.parametrize("layer", LAYERS)
def test_log_prob_is_the_change_of_variables_formula(layer: str) -> None:
    """log p(T(u)) = log Normal(u; 0, I) - log |det dT/du|, the Jacobian taken by autograd of the
    forward map point by point (not from Pyro's log_abs_det_jacobian)."""
    before = torch.get_default_dtype()
    # float64 throughout; Pyro's masked-network inverse allocates in the default dtype
    torch.set_default_dtype(torch.float64)
    try:
        flow = _flow(layer).double()
        transform = flow.transform()
        noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        points, expected = [], []
        for u in noise:
            jacobian = torch.autograd.functional.jacobian(lambda value: flow.transform()(value), u)
            x = transform(u).detach()
            points.append(x)
            standard_normal = -0.5 * float(u @ u) - math.log(2 * math.pi)
            expected.append(standard_normal - float(torch.linalg.slogdet(jacobian)[1]))
        actual = flow.distribution().log_prob(torch.stack(points)).detach()
        torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    finally:
        torch.set_default_dtype(before)


def test_bad_input_is_refused_with_what_is_expected() -> None:
    with pytest.raises(ValueError, match="needs D >= 2"):
        zoo.fit(zoo.models.Flow(), torch.randn(20, 1), zoo.SVI(num_steps=1, progress=False))
    with pytest.raises(ValueError, match=r"\(num_data, D\).*flatten"):
        zoo.models.Flow(image_shape=[8, 8])
    with pytest.raises(ValueError, match="num_layers"):
        zoo.models.Flow(num_layers=0)
    with pytest.raises(ValueError, match="layer must be one of"):
        zoo.models.Flow(layer="planar")
    with pytest.raises(ValueError, match="variational posterior over its weights is not offered"):
        zoo.fit(zoo.models.Flow(), torch.randn(20, 2), zoo.SVI(guide="normal", num_steps=1, progress=False))
    built = zoo.models.Flow(image_shape=[3])
    with pytest.raises(ValueError, match="built for 3"):
        built.log_likelihood({}, zoo.Dataset(x=torch.randn(4, 2)))
    # a one-dimensional datum is fine for an autoregressive flow
    fit = zoo.fit(zoo.models.Flow(num_layers=1, layer="affine_autoregressive", hidden_sizes=[4]), torch.randn(20, 1),
                  zoo.SVI(num_steps=2, progress=False))
    assert fit.log_prob(torch.randn(3, 1)).shape == (3,)


@pytest.fixture(scope="module")
def ring_flow() -> zoo.Fit:
    """A small flow fitted to 300 points of the ring of 8 Gaussians (30 L-BFGS steps)."""
    train = zoo.datasets.load("ring", num_data=300, seed=0)
    return zoo.fit(zoo.models.Flow(num_layers=2, hidden_sizes=[16]), train, zoo.SVI(num_steps=30, progress=False))


@pytest.mark.slow
def test_a_fitted_flow_beats_the_best_gaussian_on_the_ring(ring_flow: zoo.Fit) -> None:
    """On 8 well-separated modes a fitted flow's held-out log-density per point exceeds that of
    the maximum-likelihood Gaussian (closed form) by more than 5 held-out standard errors."""
    fit, train = ring_flow, ring_flow.train
    test = zoo.datasets.load("ring", num_data=300, seed=1)
    flow = fit.log_prob(test)
    mean, covariance = train.x.mean(0), torch.cov(train.x.T, correction=0)
    gaussian = torch.distributions.MultivariateNormal(mean, covariance).log_prob(test.x)
    difference = flow - gaussian
    assert float(difference.mean()) > 5 * float(difference.std() / math.sqrt(len(test)))


@pytest.mark.slow
def test_samples_of_a_fitted_flow_follow_its_log_prob(ring_flow: zoo.Fit) -> None:
    """``sample`` (the forward maps) and ``log_prob`` (the inverse maps and their Jacobians) are
    two codes for one distribution. A reference sample is drawn from exp(log_prob) alone, by
    quadrature: a 250 x 250 grid of cells over [-4.5, 4.5]^2 (the ring lies within radius 2.2;
    the grid holds all but < 1e-2 of the mass), a cell picked with probability density x area,
    a uniform point within it. 1000 flow samples against 1000 reference points: two-sample
    Kolmogorov-Smirnov tests of their log-densities and of each coordinate do not reject (each
    p > 0.01 / 3, Bonferroni); the log-density test rejects samples spread 10% wider
    (p < 1e-6), so it has the power to see a sampler that disagrees with the density."""
    from scipy.stats import ks_2samp

    fit, size = ring_flow, 1000
    edges = torch.linspace(-4.5, 4.5, 251)
    step = float(edges[1] - edges[0])
    centres = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    density = fit.log_prob(grid).exp()
    assert abs(float(density.sum()) * step * step - 1.0) < 1e-2
    generator = torch.Generator().manual_seed(1)
    cells = torch.multinomial(density, size, replacement=True, generator=generator)
    reference = grid[cells] + (torch.rand(size, 2, generator=generator) - 0.5) * step
    reference_log_density = fit.log_prob(reference).numpy()
    samples = fit.sample(size, seed=0)
    assert ks_2samp(fit.log_prob(samples).numpy(), reference_log_density).pvalue > 0.01 / 3
    for coordinate in range(2):
        assert ks_2samp(samples[:, coordinate].numpy(), reference[:, coordinate].numpy()).pvalue > 0.01 / 3
    centre = samples.mean(0)
    wider = (samples - centre) * 1.1 + centre
    assert ks_2samp(fit.log_prob(wider).numpy(), reference_log_density).pvalue < 1e-6
