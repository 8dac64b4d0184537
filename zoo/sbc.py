"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari and Gelman, 2018).

If a method computes the posterior correctly, then for parameters drawn from the prior and data
simulated from them, the rank of each true scalar among L posterior draws is uniform on
{0, ..., L}. ``zoo.sbc`` repeats prior draw -> simulate -> fit -> rank, and tests the ranks of
every scalar for uniformity.

>>> import zoo
>>> data = zoo.datasets.simulate.naive_bayes(num_data=20, num_classes=2, num_features=2)
>>> result = zoo.sbc(zoo.models.NaiveBayes(2), zoo.Exact(), 200, num_data=20, pilot=data)
>>> table = result.test()    # chi-square statistic and p-value per scalar
>>> bool((table["p_value"] > 0.01).all())   # the exact posterior is calibrated
True
>>> axes = zoo.plots.plot_sbc_ranks(result)

The prior draw. A zoo model's ``forward`` run without data (``model.model_kwargs(None,
num_samples=num_data)``) is its prior predictive: tracing it gives one draw of every latent site
and a simulated data set at the observed site. Models whose priors depend on the data (the
empirical priors of the Gaussian mixture and of Naive Bayes) must have them fixed first: **pass a
model ready to simulate** (``model.prepare(dataset)``, or one built with its prior settings), or
pass ``pilot=dataset`` and ``zoo.sbc`` prepares it on that data set once. The same prior then
generates every simulation and is used by every fit (``prepare`` keeps priors already set), as
SBC requires. Calibration is checked for the prior the model is given, not for the empirical one
a real data set would produce.

Labels. When ``labels`` names a site (default: "y" if the model has an enumerated site "y",
as Naive Bayes has), its simulated values become the Dataset's labels: a fully labeled data set,
for which Naive Bayes has a closed-form posterior (``zoo.Exact``). ``labels=None`` hides them.

Refused data. A simulated data set the method refuses with ValueError (Exact Naive Bayes needs a
row of every class) is drawn again (up to ``MAX_ATTEMPTS`` times). This keeps SBC valid: it
conditions the joint draw on an event of the data alone, so the truth given the data is still
distributed as the posterior and the ranks stay uniform for a correct method.

Ranks. The L draws are taken evenly spaced from all (chain, draw) draws of the fit: for MCMC this
thins the chain. The rank is uniform only if the L draws are (nearly) independent: autocorrelated
draws cluster, so the truth falls outside the cluster more often than outside L independent
draws, and the ranks pile up at 0 and L (a false U, the reason Talts et al. thin) even for a
correct sampler. Thinning makes L draws about independent when the chain's effective sample size
(ESS) is at least L, so for MCMC ``zoo.sbc`` records each fit's smallest bulk ESS
(``SBCResult.ess``) and warns when a fit falls below L: give NUTS ``num_samples`` a few times L,
or lower ``num_draws``. Each fit is seeded apart from its prior draw, so that its draws never
reuse the random numbers of the truth. Ties (a point-mass guide's draws are all one value) are
broken at random, so a point mass gives ranks near 0 or L. Discrete latents (enumerated sites)
and per-datum local latents are not ranked. Draws are relabelled with the model's ``relabel``
(ordered components), and so are the true values.

Uniformity test. Ranks are binned into ``num_bins`` bins (default the largest of 20, 10, 5 leaving
5 or more simulations per bin, else 4); under uniformity each bin's count is multinomial,
and Pearson's chi-square statistic with ``num_bins - 1`` degrees of freedom gives a p-value
(survival function via ``torch.special.gammaincc``: scipy is not a runtime dependency). With P
scalars tested, :meth:`SBCResult.passed` applies a Bonferroni correction (every p > alpha / P).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyro.poutine as poutine
import torch

from zoo.checks import check_positive_int, check_seed
from zoo.datasets.dataset import Dataset, as_dataset
from zoo.infer import fit as run_fit
from zoo.infer.guides import POINT_MASS_GUIDES
from zoo.infer.methods import parse_method
from zoo.infer.runtime import isolated
from zoo.models.base import Model
from zoo.results import FitError, one_line

__all__ = ["sbc", "SBCResult", "prior_draw", "chi_square_sf"]


def chi_square_sf(statistic: torch.Tensor | float, df: int) -> torch.Tensor:
    """P(X >= statistic) for X ~ chi-square(df): the regularised upper incomplete gamma Q(df/2, x/2)."""
    statistic = torch.as_tensor(statistic, dtype=torch.float64)
    return torch.special.gammaincc(torch.full_like(statistic, df / 2), statistic / 2)


@dataclass
class SBCResult:
    """What :func:`sbc` returns.

    Attributes
    ----------
    ranks : dict of str to Tensor
        Rank of each true scalar among ``num_draws`` posterior draws, shaped
        (num_simulations, *site_shape), integers in 0..num_draws.
    truth : dict of str to Tensor
        The prior draws, shaped (num_simulations, *site_shape).
    num_draws : int
        L, the posterior draws each rank is taken among.
    method : str
        The method's label ("exact", "svi:delta", "nuts").
    wall_time : float
        Seconds, in all.
    fit_times : Tensor
        Seconds of each fit, shape (num_simulations,).
    ess : Tensor
        Each fit's smallest bulk effective sample size over its scalars, shape (num_simulations,):
        for MCMC, whose draws are autocorrelated; NaN for methods whose draws are independent
        (Exact, SVI). Ranks are only uniform for a correct sampler when it is at least
        ``num_draws`` (see the module's docs).
    failures : list of str
        The rounds whose fit failed ("round 3: FitError: ..."), left out of the ranks. A fit
        that fails more often for some true values than for others biases the ranks: a
        failure is a finding of its own, not noise to drop.
    """

    ranks: dict[str, torch.Tensor]
    truth: dict[str, torch.Tensor]
    num_draws: int
    method: str
    wall_time: float = 0.0
    fit_times: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    ess: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    failures: list[str] = field(default_factory=list)

    @property
    def num_simulations(self) -> int:
        return int(next(iter(self.ranks.values())).shape[0])

    def flat_ranks(self) -> dict[str, torch.Tensor]:
        """Scalar name ("loc[0,1]") -> ranks, shape (num_simulations,)."""
        flat: dict[str, torch.Tensor] = {}
        for name, ranks in self.ranks.items():
            shape = ranks.shape[1:]
            columns = ranks.reshape(ranks.shape[0], -1)
            for position in range(columns.shape[1]):
                index = torch.unravel_index(torch.tensor(position), shape) if shape else ()
                label = name + ("[" + ",".join(str(int(i)) for i in index) + "]" if shape else "")
                flat[label] = columns[:, position]
        return flat

    def default_bins(self) -> int:
        """The largest of 20, 10, 5 bins with at least 5 simulations per bin; else 4 (a U shape
        needs 3 bins or more to show; with under 20 simulations the chi-square p-value is rough)."""
        for bins in (20, 10, 5):
            if self.num_simulations >= 5 * bins and bins <= self.num_draws + 1:
                return bins
        return min(4, self.num_draws + 1)

    def bin_edges(self, num_bins: int | None = None) -> torch.Tensor:
        """Rank values 0..L split into ``num_bins`` nearly equal runs: bin of rank r is floor(r * B / (L + 1))."""
        num_bins = self.default_bins() if num_bins is None else num_bins
        return torch.arange(self.num_draws + 1) * num_bins // (self.num_draws + 1)

    def histogram(self, num_bins: int | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Counts per bin of every scalar, and the expected count per bin under uniformity.

        Returns
        -------
        counts : dict of str to Tensor, each (num_bins,)
        expected : Tensor, shape (num_bins,)
        """
        num_bins = self.default_bins() if num_bins is None else num_bins
        check_positive_int(num_bins, "num_bins", minimum=2)
        if num_bins > self.num_draws + 1:
            raise ValueError(f"num_bins={num_bins} is more than the {self.num_draws + 1} possible ranks")
        bin_of = self.bin_edges(num_bins)
        width = torch.bincount(bin_of, minlength=num_bins).double()
        expected = self.num_simulations * width / (self.num_draws + 1)
        counts = {
            name: torch.bincount(bin_of[ranks], minlength=num_bins).double() for name, ranks in self.flat_ranks().items()
        }
        return counts, expected

    def test(self, num_bins: int | None = None) -> pd.DataFrame:
        """Pearson's chi-square test of uniform ranks, per scalar.

        Returns
        -------
        pandas.DataFrame
            Indexed by scalar ("loc[0,1]"), columns ``chi2``, ``df``, ``p_value``, ``mean_rank``
            (L/2 when calibrated: lower means the method's posterior sits above the truth) and
            ``sd_rank`` (about (L+1)/sqrt(12) when calibrated; smaller: the posterior is too wide,
            larger: too narrow, over-confident).
        """
        counts, expected = self.histogram(num_bins)
        rows = []
        flat = self.flat_ranks()
        for name, observed in counts.items():
            chi2 = float(((observed - expected) ** 2 / expected).sum())
            ranks = flat[name].double()
            rows.append(
                {
                    "chi2": chi2,
                    "df": len(expected) - 1,
                    "p_value": float(chi_square_sf(chi2, len(expected) - 1)),
                    "mean_rank": float(ranks.mean()),
                    "sd_rank": float(ranks.std()) if len(ranks) > 1 else math.nan,
                }
            )
        return pd.DataFrame(rows, index=pd.Index(list(counts), name="parameter"))

    def passed(self, alpha: float = 0.01, num_bins: int | None = None) -> bool:
        """Whether every scalar passes at family-wise level ``alpha`` (Bonferroni: p > alpha / P)."""
        p_values = self.test(num_bins)["p_value"]
        return bool((p_values > alpha / len(p_values)).all())


def _label_site(model: Model, labels: str | None | bool) -> str | None:
    if labels is True or labels == "auto":
        return "y" if "y" in model.enumerated_sites else None
    return labels or None


def prior_draw(model: Model, num_data: int, labels: str | None = None) -> tuple[dict[str, torch.Tensor], Dataset]:
    """One draw of the model's global latents from the prior and a data set simulated from it.

    Uses torch's global generator (seed it, or run inside ``zoo.infer.runtime.isolated``).

    Parameters
    ----------
    model : zoo.models.Model
        Ready to simulate (data-dependent priors resolved: ``model.prepare(dataset)``).
    num_data : int
    labels : str, optional
        A site whose value becomes the Dataset's labels ``y``.

    Returns
    -------
    truth : dict of str to Tensor
        Each global continuous latent site's value (site shape).
    data : Dataset
        ``x`` shaped like the model's data, (num_data, ...).
    """
    kwargs = model.model_kwargs(None, num_samples=num_data)
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(**kwargs)
    skip = set(model.enumerated_sites) | set(model.local_sites) | set(model.integrated_sites) | {model.observed_site}
    truth = {
        name: node["value"].detach().clone()
        for name, node in trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"] and name not in skip
        and not node["infer"].get("enumerate")
    }
    x = trace.nodes[model.observed_site]["value"].detach()
    y = trace.nodes[labels]["value"].detach().long() if labels else None
    return truth, Dataset(x, y=y, name="sbc", description="data simulated from the prior")


#: Prior draws tried per round before giving up on data the method refuses.
MAX_ATTEMPTS = 20

#: Added to a round's seed to seed its fit. The fit must not reuse the random numbers that drew
#: the truth: ``zoo.Exact`` seeded like the prior draw would make its first posterior draw out of
#: the very numbers that made the true value, correlating the two (SBC needs the draws independent
#: of the truth given the data).
FIT_SEED_OFFSET = 2**30


def _ranks(draws: torch.Tensor, truth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rank of ``truth`` (site shape) among ``draws`` (L, *site shape), ties broken at random."""
    below = (draws < truth).sum(0)
    ties = (draws == truth).sum(0)
    return below + (torch.rand(ties.shape, generator=generator, dtype=torch.float64) * (ties + 1)).floor().long()


#: What one round returns: ranks and true values per site, the fit's seconds and its ESS.
#: (ranks, truth, fit seconds, ESS, the failed fit's error in one line or None)
Round = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float, float, "str | None"]


def _effective_sample_size(method: Any, diagnostics: dict[str, Any]) -> float:
    """The fit's smallest bulk ESS if its draws are a Markov chain, else NaN (independent draws)."""
    if method.kind != "nuts":
        return math.nan
    ess = diagnostics.get("min_ess_bulk")
    return float(ess) if ess is not None else math.nan


def _point_mass(method: Any, model: Model) -> bool:
    """Whether fits by ``method`` are one point (a point-mass guide): they hold one draw, which
    stands for any number of identical draws."""
    return getattr(method, "kind", None) == "svi" and method.guide_name(model) in POINT_MASS_GUIDES


def _available_draws(method: Any, model: Model) -> int | None:
    """How many draws a fit by ``method`` holds, where its configuration says (else None; also
    for a point mass, whose one draw is ranked as any number of copies)."""
    if _point_mass(method, model):
        return None
    if hasattr(method, "num_samples") and hasattr(method, "num_chains"):
        return int(method.num_samples) * int(method.num_chains)
    if hasattr(method, "num_posterior_samples"):
        return int(method.num_posterior_samples)
    return None


def _simulate(model: Model, method: Any, index: int, seed: int, num_data: int, num_draws: int, labels: str | None) -> Round:
    """One SBC round: prior draw, simulated data, fit, ranks. Module-level so it pickles."""
    round_seed = seed * 1_000_003 + index
    for attempt in range(MAX_ATTEMPTS):
        attempt_seed = (round_seed + attempt * 7_919_000_003) % (2**31)
        with isolated(seed=attempt_seed):
            truth, data = prior_draw(model, num_data, labels)
        if "seed" in getattr(method, "__dataclass_fields__", {}):
            method = dataclasses.replace(method, seed=(attempt_seed + FIT_SEED_OFFSET) % (2**31))
        try:
            result = run_fit(model, data, method)
            break
        except FitError as error:  # the fit failed: a round of its own, recorded, not a crash
            return {}, {}, math.nan, math.nan, one_line(error)
        except ValueError:  # data the method refuses (a class with no row): draw again
            if attempt == MAX_ATTEMPTS - 1:
                raise
    truth = {name: value[None, None] for name, value in truth.items()}
    truth = {name: value[0, 0] for name, value in result.model.relabel(truth).items()}
    generator = torch.Generator().manual_seed(round_seed)
    ranks = {}
    for name, value in truth.items():
        if name not in result.draws:
            continue
        draws = result.draws[name].detach()
        flat = draws.reshape((-1,) + draws.shape[2:])
        if flat.shape[0] < num_draws and not _point_mass(method, result.model):
            raise ValueError(
                f"the fit holds {flat.shape[0]} draws, fewer than num_draws={num_draws}: ask the method for more"
            )
        # (a point mass's one draw is taken num_draws times: the truth ranks 0 or num_draws)
        chosen = torch.linspace(0, flat.shape[0] - 1, num_draws).round().long()
        ranks[name] = _ranks(flat[chosen].double(), value.double(), generator)
    return ranks, truth, float(result.wall_time), _effective_sample_size(method, result.diagnostics), None


def _worker(arguments: tuple[Any, ...]) -> Round:
    torch.set_num_threads(1)
    return _simulate(*arguments)


def sbc(
    model: Model,
    method: Any,
    num_simulations: int = 100,
    num_data: int = 50,
    num_draws: int = 99,
    seed: int = 0,
    processes: int = 1,
    pilot: Any = None,
    labels: str | None | bool = True,
) -> SBCResult:
    """Simulation-based calibration of ``method`` on ``model``.

    Parameters
    ----------
    model : zoo.models.Model
        Ready to simulate (``model.prepare(dataset)``), or give ``pilot``.
    method : method configuration or str
        E.g. ``zoo.Exact()``, ``zoo.NUTS(...)``, "svi:delta" (see :func:`zoo.infer.methods.parse_method`).
        Its ``seed`` is replaced in each round by that round's fit seed (see ``seed``).
    num_simulations : int
        Rounds (prior draw, simulated data, fit).
    num_data : int
        Data points per simulated data set.
    num_draws : int
        L: posterior draws each rank is taken among (thinned evenly from the fit's draws; the fit
        must hold at least L, and an MCMC fit an effective sample size of about L or more).
    seed : int
        Round i uses seed ``seed * 1000003 + i`` for its prior draw and that plus ``2**30`` for
        its fit (never the truth's random numbers): results do not depend on ``processes``.
    processes : int
        Worker processes (spawned; each uses one torch thread); 1 runs in this process.
    pilot : Dataset, tensor or array, optional
        Data to resolve data-dependent priors with (``model.prepare(pilot)``), once.
    labels : str, bool or None
        The site that becomes the simulated data's labels; True: "y" when the model enumerates a
        site "y"; None or False: unlabeled data.

    Returns
    -------
    SBCResult
        Ranks, truths, ``test()`` (chi-square per scalar), ``passed()``; plot with
        :func:`zoo.plots.plot_sbc_ranks`.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, a model whose prior is not resolved, or a method it cannot take or
        that would hold fewer than ``num_draws`` draws, before any simulation.

    Warns
    -----
    UserWarning
        When an MCMC fit's effective sample size is below ``num_draws``: its thinned draws are
        autocorrelated, which makes even a correct sampler's ranks U-shaped.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a zoo model, got {type(model).__name__}")
    method = parse_method(method)
    check_positive_int(num_simulations, "num_simulations", minimum=2)
    check_positive_int(num_data, "num_data")
    check_positive_int(num_draws, "num_draws")
    seed = check_seed(seed)
    check_positive_int(processes, "processes")
    if method.kind not in model.methods:
        raise ValueError(f"method: {type(model).__name__} does not take {method.label(model)}; it takes {', '.join(model.methods)}")
    if method.kind == "adversarial":
        raise ValueError("method: an adversarial fit has no posterior draws to rank")
    available = _available_draws(method, model)
    if available is not None and available < num_draws:
        raise ValueError(
            f"num_draws={num_draws}: the method's fits hold {available} draws; ask it for more "
            "(num_samples, num_posterior_samples) or lower num_draws"
        )
    if pilot is not None:
        model = model.prepare(as_dataset(pilot, "pilot"))
    labels = _label_site(model, labels)
    try:  # a dry run: the prior must be resolved and the method must take the simulated data
        for attempt in range(MAX_ATTEMPTS):  # as a round draws again (a class with no row)
            with isolated(seed=(seed + attempt * 7_919_000_003) % (2**31)):
                _, data = prior_draw(model, num_data, labels)
            try:
                method.validate(model.prepare(data), data)
                break
            except ValueError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
    except ValueError as error:
        raise ValueError(
            f"model cannot simulate from its prior ({error}); pass a prepared model "
            "(model.prepare(dataset)) or pilot=dataset"
        ) from None
    except KeyError as error:
        raise ValueError(f"labels: the model has no site {error}") from None

    start = time.perf_counter()
    jobs = [(model, method, index, seed, num_data, num_draws, labels) for index in range(num_simulations)]
    if processes == 1:
        outputs = [_simulate(*job) for job in jobs]
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            outputs = list(pool.map(_worker, jobs, chunksize=max(1, num_simulations // (4 * processes))))
    failures = [f"round {index}: {output[4]}" for index, output in enumerate(outputs) if output[4] is not None]
    outputs = [output for output in outputs if output[4] is None]
    if not outputs:
        raise FitError(f"every one of the {num_simulations} SBC fits failed; the first: {failures[0]}")
    if failures:
        warnings.warn(
            f"{len(failures)} of {num_simulations} SBC fits failed and are left out of the ranks "
            f"(result.failures); the first: {failures[0]}",
            UserWarning,
            stacklevel=2,
        )
    names = list(outputs[0][0])
    ranks = {name: torch.stack([output[0][name] for output in outputs]) for name in names}
    truth = {name: torch.stack([output[1][name] for output in outputs]) for name in names}
    times = torch.tensor([output[2] for output in outputs])
    ess = torch.tensor([output[3] for output in outputs], dtype=torch.float64)
    low = ess < num_draws  # False where NaN: independent draws
    if bool(low.any()):
        warnings.warn(
            f"{int(low.sum())} of {num_simulations} fits have an effective sample size below "
            f"num_draws={num_draws} (smallest {float(ess[low].min()):.1f}): their thinned draws are "
            "autocorrelated, which piles ranks up at 0 and L even for a correct sampler; ask the "
            "method for more draws (num_samples) or lower num_draws",
            UserWarning,
            stacklevel=2,
        )
    return SBCResult(
        ranks=ranks,
        truth=truth,
        num_draws=num_draws,
        method=method.label(model),
        wall_time=time.perf_counter() - start,
        fit_times=times,
        ess=ess,
        failures=failures,
    )
