"""The VAE's training objective: KL weight and warm-up, and the per-term history."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.models.vae import encode


@pytest.mark.slow
def test_the_recorded_kl_term_equals_the_closed_form_kl_of_the_encoder() -> None:
    """history["kl"] is a one-draw Monte Carlo estimate on 256 random rows of
    mean_i KL(q(z | x_i) || N(0, I)), which for a Gaussian encoder is closed form:
    0.5 sum_j (s_j^2 + m_j^2 - 1 - 2 log s_j). Per datum, the one-draw estimate has variance
    sum_j (m_j^2 s_j^2 + (s_j^2 - 1)^2 / 2) about its KL (z = m + s e, e ~ N(0, 1)); with the
    spread of KL_i over data, four standard errors of a mean of 256 bound the difference.
    The recorded KL weight follows the warm-up."""
    train = zoo.datasets.load("digits", binarize=True).subset(list(range(300)))
    method = zoo.SVI(batch_size=100, num_epochs=6, kl_weight=0.5, kl_warmup_steps=6, seed=0, progress=False)
    fit = zoo.fit(zoo.models.VAE(latent_dim=4, hidden_sizes=[32]), train, method)
    history = fit.history
    assert set(history) >= {"reconstruction", "kl", "kl_weight", "epoch_loss"}
    assert len(history["kl"]) == 6
    # warm-up: 0.5 * step / 6, so 0 at step 0 and 0.5 from step 6 on; epochs end at steps 2, 5, 8, ...
    expected = [0.5 * min(1.0, step / 6) for step in (2, 5, 8, 11, 14, 17)]
    torch.testing.assert_close(history["kl_weight"], torch.tensor(expected), check_dtype=False)

    loc, scale = encode(fit, train)
    loc, scale = loc.double(), scale.double()
    kl_per_datum = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)  # (N,)
    draw_variance = (loc**2 * scale**2 + (scale**2 - 1) ** 2 / 2).sum(-1)
    standard_error = math.sqrt(float(draw_variance.mean() + kl_per_datum.var()) / 256)
    assert float(history["kl"][-1]) == pytest.approx(float(kl_per_datum.mean()), abs=4 * standard_error)


def test_kl_weight_changes_the_objective_not_the_density_and_is_checked() -> None:
    """The same decoder scored with and without the weight: log_prob does not depend on the
    method's kl_weight (it is the model's density); bad settings are refused by name."""
    train = zoo.datasets.load("digits", binarize=True).subset(list(range(100)))
    fit = zoo.fit(zoo.models.VAE(latent_dim=2, hidden_sizes=[16]), train, zoo.SVI(batch_size=50, num_epochs=1, kl_weight=0.1, progress=False))
    other = fit.replace(method=zoo.SVI(batch_size=50, num_epochs=1, progress=False))
    torch.testing.assert_close(fit.log_prob(train, num_particles=5), other.log_prob(train, num_particles=5))
    with pytest.raises(ValueError, match="kl_weight"):
        zoo.SVI(kl_weight=0.0)
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        zoo.SVI(kl_warmup_steps=-1)
