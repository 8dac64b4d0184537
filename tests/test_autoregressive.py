"""The autoregressive model (MADE): a normalised chain-rule density, its order, its sampler.

The contract checks (tests/test_contract.py) cover it as a registered model.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import zoo


def _model(num_categories: int, num_pixels: int) -> zoo.models.Autoregressive:
    """A built model with random weights made large enough that the conditionals are far from
    uniform (Pyro's initial output layer is small)."""
    model = zoo.models.Autoregressive(num_categories=num_categories, hidden_sizes=[16, 16], image_shape=[num_pixels])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model


@pytest.mark.parametrize(("num_categories", "num_pixels"), [(2, 6), (3, 4)])
def test_probabilities_of_every_image_sum_to_one(num_categories: int, num_pixels: int) -> None:
    """Brute force over all K^D images: the exact probabilities sum to one, and are not uniform."""
    model = _model(num_categories, num_pixels)
    images = torch.tensor(list(itertools.product(range(num_categories), repeat=num_pixels)), dtype=torch.float32)
    log_probs = model.log_likelihood({}, zoo.Dataset(x=images))[0].double()
    torch.testing.assert_close(log_probs.logsumexp(0), torch.tensor(0.0, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float(log_probs.max() - log_probs.min()) > 1.0


@pytest.mark.parametrize("num_categories", [2, 5])
def test_each_conditional_depends_only_on_earlier_pixels(num_categories: int) -> None:
    """d log p(x_d | x_<d) / d x_j is zero for every j >= d and not for all j < d (gradients
    through the network's real-valued input)."""
    model = _model(num_categories, 5)
    density = model.distribution()
    x = torch.rand(5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    logits = density.network(x)
    logits = logits if num_categories == 2 else logits.logsumexp(-2) + logits[0]  # a function of every output
    for pixel in range(5):
        (gradient,) = torch.autograd.grad(logits[pixel], x, retain_graph=True)
        assert torch.all(gradient[pixel:] == 0), pixel
        if pixel:
            assert bool((gradient[:pixel] != 0).any()), pixel


def test_pixel_by_pixel_samples_follow_the_density() -> None:
    """Frequencies of the 8 images of 3 binary pixels among 4000 sequential samples agree with
    exp(log_prob) within 4 binomial standard errors each."""
    model = _model(2, 3)
    images = torch.tensor(list(itertools.product(range(2), repeat=3)), dtype=torch.float32)
    probabilities = model.log_likelihood({}, zoo.Dataset(x=images))[0].exp()
    pyro_seed = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=pyro_seed)))
        samples = model.distribution().sample((4000,))
    codes = (samples * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    frequencies = torch.bincount(codes, minlength=8).float() / 4000
    tolerance = 4 * (probabilities * (1 - probabilities) / 4000).sqrt() + 1e-3
    assert torch.all((frequencies - probabilities).abs() <= tolerance)


def test_bad_input_is_refused_with_what_is_expected() -> None:
    binary = zoo.models.Autoregressive(hidden_sizes=[64])
    with pytest.raises(ValueError, match=r"holds 0.5.*integer pixels 0..1"):
        zoo.fit(binary, torch.full((10, 4), 0.5), zoo.SVI(num_steps=1, progress=False))
    with pytest.raises(ValueError, match=r"holds 3.*integer pixels 0..1"):
        zoo.fit(binary, torch.full((10, 4), 3.0), zoo.SVI(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="at least D = 64"):
        zoo.models.Autoregressive(hidden_sizes=[16], image_shape=[8, 8])
    with pytest.raises(ValueError, match="num_categories"):
        zoo.models.Autoregressive(num_categories=1)
    with pytest.raises(ValueError, match="variational posterior over its weights is not offered"):
        zoo.fit(binary, torch.ones(10, 4), zoo.SVI(guide="mvn", num_steps=1, progress=False))
