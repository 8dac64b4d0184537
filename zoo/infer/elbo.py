"""A mean-field ELBO that computes only the log-densities its estimate reads.

Pyro's ``TraceMeanField_ELBO`` takes every latent site's term as ``-KL(q || p)`` in closed form
where one is registered, yet it first computes, like every trace ELBO, the log-density of every
site of the model's trace and the score parts of every site of the guide's
(``pyro.infer.enum.get_importance_trace``), and then reads only the observed sites' (and those of
a latent site with no closed-form KL). For a deep chain of latents, a diffusion model's T
Gaussian sites in each trace, those 2T unused log-densities and their bookkeeping are a large
part of a step. :class:`MeanFieldELBO` traces as Pyro does and computes the observed sites'
log-densities only, and a latent site's log-density and score parts only where its KL term
falls back on them: the same estimate, to float rounding, from the same random draws.
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement  # private: the check Pyro's own class makes
from pyro.infer.util import check_fully_reparametrized, is_validation_enabled, torch_item
from pyro.poutine import replay, trace
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape

__all__ = ["MeanFieldELBO"]


class MeanFieldELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` without the log-densities it does not read (see the module docs).

    Same arguments as :class:`pyro.infer.TraceMeanField_ELBO`. Guides that are
    ``GuideMessenger`` instances are not supported (zoo builds none).
    """

    def _get_trace(self, model: Any, guide: Any, args: Any, kwargs: Any) -> tuple[Any, Any]:
        # pyro.infer.enum.get_importance_trace, less its eager compute_log_prob and
        # compute_score_parts (the loss computes what it reads)
        guide_trace = trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        model_trace = trace(replay(model, trace=guide_trace), graph_type="flat").get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        if is_validation_enabled():
            # checks read every site's log-density: computed here, as Pyro does (a fit's steps
            # run with validation off and skip them)
            model_trace.compute_log_prob()
            guide_trace.compute_score_parts()
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, self.max_plate_nesting)
            _check_mean_field_requirement(model_trace, guide_trace)
        else:
            model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        return model_trace, guide_trace

    def _differentiable_loss_particle(self, model_trace: Any, guide_trace: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The ELBO of one particle, as ``TraceMeanField_ELBO._differentiable_loss_particle``
        (loss: a number, or a detached tensor under the jit tracer; surrogate: the differentiable
        tensor)."""
        elbo: Any = 0.0
        for name, guide_site in guide_trace.nodes.items():
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                raise NotImplementedError(f"MeanFieldELBO: the guide's auxiliary site {name!r} is not supported")
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if is_validation_enabled():
                check_fully_reparametrized(guide_site)
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
            except NotImplementedError:
                # no closed form: the Monte Carlo term log p(z) - log q(z) at the guide's draw
                model_trace.compute_log_prob(site_filter=lambda other, site: other == name)
                log_q = guide_site["fn"].log_prob(guide_site["value"])
                log_q = scale_and_mask(log_q, guide_site["scale"], guide_site["mask"])
                elbo = elbo + model_site["log_prob_sum"] - log_q.sum()
                continue
            kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
            elbo = elbo - (kl.sum() if torch.is_tensor(kl) else kl * torch.Size(guide_site["fn"].batch_shape).numel())
        surrogate = -torch.as_tensor(elbo)
        # private, as in Pyro's own class: under the jit tracer the loss stays a tensor
        loss = surrogate.detach() if torch._C._get_tracing_state() else torch_item(surrogate)
        return loss, surrogate
