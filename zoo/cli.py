"""The ``zoo`` command: ``zoo list``, ``zoo fit MODEL ...``, ``zoo compare MODEL ...``,
``zoo select MODEL ...``, ``zoo tour``, ``zoo --version``.

Each registered model gets its own ``zoo fit NAME`` (``compare``, ``select``) sub-command whose
options are its constructor's arguments (``--num-components`` for ``gmm``), read from its
signature, so a new model needs no change here. Data come from a bundled data set
(``--dataset old_faithful``) or the user's own file (``--data my.csv`` with ``--columns``,
``--label``, ``--sequence-id``, ``--time``; see :mod:`zoo.datasets.frames`). ``--out`` is
checked before any fit starts. Every error (a bad argument, a fit that failed, a file that could
not be read or written) is one line on standard error, and the exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zoo.checks import check_output_directory
from zoo.comparison import compare
from zoo.datasets import Dataset, describe, real
from zoo.datasets import load as load_dataset
from zoo.datasets import names as dataset_names
from zoo.diagnostics import to_netcdf
from zoo.infer import METHODS
from zoo.infer import fit as run_fit
from zoo.infer.guides import GUIDES
from zoo.infer.methods import NUTS, SVI
from zoo.leaderboard import leaderboard
from zoo.models import HiddenMarkovModel
from zoo.models import get as model_class_named
from zoo.models import names as model_names
from zoo.plots import plot_losses, plot_mixture
from zoo.report import comparison_table
from zoo.results import one_line
from zoo.selection import select
from zoo.tour import run as run_tour

__all__ = ["main"]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (and exit status 2, as argparse's)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return importlib.metadata.version("zoo")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "(not installed)"


#: The options of the commands themselves, which a model argument's option may not take.
COMMAND_OPTIONS = frozenset({
    "seed", "method", "guide", "num_steps", "learning_rate", "batch_size", "num_epochs", "num_threads",
    "num_posterior_samples", "device", "distributed", "num_warmup", "num_samples", "num_chains", "out",
    "quiet", "dataset", "data", "columns", "label", "sequence_id", "time", "binarize", "test_fraction",
    "methods", "reference", "values", "criterion", "help", "version", "fast",
})


def _add_model_options(parser: argparse.ArgumentParser, model_class: type, exclude: tuple[str, ...] = ()) -> list[str]:
    """One option per constructor argument of ``model_class`` with a simple type (but ``exclude``)."""
    names = []
    for name, parameter in inspect.signature(model_class.__init__).parameters.items():
        if name == "self" or name in exclude or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = parameter.default
        annotation = str(parameter.annotation)
        if isinstance(default, bool) or "bool" in annotation:
            kind: Any = lambda text: text.lower() in ("1", "true", "yes")  # noqa: E731
        elif isinstance(default, int) or annotation == "int":
            kind = int
        elif isinstance(default, float) or annotation == "float":
            kind = float
        elif isinstance(default, str) or annotation == "str":
            kind = str
        elif isinstance(default, (tuple, list)) and all(isinstance(item, int) for item in default):
            kind = lambda text: [int(item) for item in text.split(",") if item]  # noqa: E731  "400,200"
        else:
            continue  # lists and other structures are not command-line material
        required = default is inspect.Parameter.empty
        # a model argument named like a command option (a diffusion model's num_steps) is
        # --model-NAME, so neither hides the other
        option = _option(f"model_{name}") if name in COMMAND_OPTIONS else _option(name)
        parser.add_argument(
            option,
            dest=f"model_{name}",
            type=kind,
            required=required,
            default=None if required else default,
            help=f"model argument {name}" + ("" if required else f" (default {default!r})"),
        )
        names.append(name)
    return names


#: The command-line options each method takes (the others: those of ``_OTHER_METHOD_ARGUMENTS``
#: that its configuration has).
_METHOD_ARGUMENTS = {
    "svi": ("guide", "num_steps", "learning_rate", "seed", "batch_size", "num_epochs", "num_threads",
            "num_posterior_samples", "device", "distributed"),
    "nuts": ("num_warmup", "num_samples", "num_chains", "seed"),
}
_OTHER_METHOD_ARGUMENTS = ("seed", "num_samples", "num_steps", "num_epochs", "batch_size", "num_threads", "device",
                           "distributed")


def _method(arguments: argparse.Namespace) -> Any:
    """The method configuration the command line asks for; options left unset (None) keep the
    configuration's defaults."""
    if arguments.method not in METHODS:
        raise ValueError(f"unknown method {arguments.method!r}; valid methods: {', '.join(METHODS)}")
    config = METHODS[arguments.method][0]
    names = _METHOD_ARGUMENTS.get(arguments.method, _OTHER_METHOD_ARGUMENTS)
    values = {name: getattr(arguments, name) for name in names}
    values["progress"] = not arguments.quiet
    if arguments.method not in _METHOD_ARGUMENTS and arguments.learning_rate is not None:
        # zoo.Adversarial: one rate for both networks
        values.update(generator_learning_rate=arguments.learning_rate,
                      discriminator_learning_rate=arguments.learning_rate)
    fields = getattr(config, "__dataclass_fields__", {})
    return config(**{name: value for name, value in values.items() if name in fields and value is not None})


def command_list(arguments: argparse.Namespace) -> int:
    print("Models (zoo fit NAME):")
    for name in model_names():
        cls = model_class_named(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<12} {cls.__name__:<22} methods: {', '.join(cls.methods):<14} {summary}")
    print("\nMethods (--method):")
    for kind, (config, _) in METHODS.items():
        print(f"  {kind:<12} zoo.{config.__name__}: {(config.__doc__ or '').strip().splitlines()[0]}")
    print("\nGuides (--guide, for svi):")
    for name, (_, what) in GUIDES.items():
        print(f"  {name:<12} {what}")
    print("\nData sets (--dataset):")
    for name in dataset_names():
        print(f"  {describe(name)}")
    return 0


def _figure(fit: Any, train: Any) -> Any:
    """The fit over its data where the model has a picture for it, else its loss curve."""
    import matplotlib  # heavy (seconds): imported only when a figure is written (--out)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 4))
    if fit.model.registry_name == "gmm" and train.x.dim() == 2 and train.num_features == 2:
        plot_mixture(fit, train, ax=ax)
    elif fit.losses.numel():
        plot_losses({fit.method_name: fit}, ax=ax)
    elif "lp" in fit.sample_stats:
        ax.plot(fit.sample_stats["lp"].T.numpy())
        ax.set(xlabel="draw", ylabel="log density", title="NUTS trace of the log density")
    else:  # a closed-form posterior (zoo.Exact): no loss, no trace; how well it explains each datum
        ax.hist(fit.log_prob(train).numpy(), bins=30)
        ax.set(xlabel="log predictive density of a training datum", ylabel="count", title=fit.method_name)
    figure.tight_layout()
    return figure


def _names(text: str | None) -> list[str] | None:
    """"a,b" -> ["a", "b"]."""
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _data(arguments: argparse.Namespace, model_class: type) -> tuple[Any, Any, Any]:
    """(data, train, test): a bundled data set, or the user's file, split for held-out scores."""
    if arguments.dataset is not None:
        file_options = [option for option in ("columns", "label", "sequence_id", "time") if getattr(arguments, option)]
        if file_options:
            raise ValueError(f"--{file_options[0].replace('_', '-')} chooses columns of a --data file, not of a bundled --dataset")
        data = load_dataset(arguments.dataset, **({"binarize": True} if arguments.binarize else {}))
        if "split" in inspect.signature(real.__dict__.get(arguments.dataset, len)).parameters:
            # a data set published with its own split (JSB chorales): train on train, test on test
            return data, data, load_dataset(arguments.dataset, split="test")
    else:
        data = Dataset.from_file(arguments.data, label=arguments.label, columns=_names(arguments.columns),
                                 sequence_id=arguments.sequence_id, time=arguments.time)
        if issubclass(model_class, HiddenMarkovModel) and data.lengths is None:
            # rows without --sequence-id / --time: the file is one sequence, in file order
            data = Dataset(data.x.unsqueeze(0), lengths=[len(data)], name=data.name,
                           description=data.description, feature_names=data.feature_names)
    # rows at random; a single sequence is split in time (its end held out)
    return (data,) + data.split(test_fraction=arguments.test_fraction, seed=arguments.seed)


def _model(arguments: argparse.Namespace, **fixed: Any) -> Any:
    options = {name: getattr(arguments, f"model_{name}") for name in arguments.model_options}
    return model_class_named(arguments.model)(**options, **fixed)


def _print_table(table: Any, out: Any, name: str) -> None:
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / name)
        print(f"\nWrote {folder / name}")


def _check_out(arguments: argparse.Namespace) -> None:
    """Refuse an ``--out`` that cannot be a folder, before any work: it is created, and a file
    written in it and removed (the only test that holds for every user, root included, and
    every file system)."""
    if getattr(arguments, "out", None) is None:
        return
    out = check_output_directory(arguments.out, "--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ValueError(f"--out {str(out)!r} cannot be written: {error.strerror or error}") from None


def command_fit(arguments: argparse.Namespace) -> int:
    _check_out(arguments)
    model = _model(arguments)
    data, train, test = _data(arguments, type(model))
    method = _method(arguments)
    fit = run_fit(model, train, method)
    if arguments.distributed:
        import torch.distributed

        if torch.distributed.get_rank() != 0:  # every process holds the same fit: one reports it
            return 0
    table = comparison_table({fit.method_name: fit}, test)
    unit = "rows" if train.lengths is None else f"sequences ({train.num_observations} steps)"
    held = "" if test.lengths is None else f" ({test.num_observations} steps)"
    print(f"{type(model).__name__} on {data.name}: {len(train)} training {unit}, {len(test)} held out{held}\n")
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    if fit.draws:  # a model with no global latents (a VAE) has no posterior to summarise
        print("\nPosterior summary:")
        print(fit.summary(kind="stats").to_string(float_format=lambda value: f"{value:.3f}"))
    if arguments.out:
        # everything that can fail is computed before the first file is written
        idata = fit.to_arviz(test)
        figure = _figure(fit, train)
        out = Path(arguments.out)
        out.mkdir(parents=True, exist_ok=True)
        fit.save(out / "fit.zoo")
        to_netcdf(idata, out / "inference_data.nc")
        table.to_csv(out / "summary.csv")
        figure.savefig(out / "fit.png", dpi=100, bbox_inches="tight")
        print(f"\nWrote {out / 'fit.zoo'}, {out / 'inference_data.nc'}, {out / 'summary.csv'} and {out / 'fit.png'}")
    return 0


def command_compare(arguments: argparse.Namespace) -> int:
    _check_out(arguments)
    model = _model(arguments)
    _, train, test = _data(arguments, type(model))
    table = compare(model, train, test, methods=_names(arguments.methods), reference=arguments.reference)
    print(f"{type(model).__name__}: {len(train)} training rows, {len(test)} held out; "
          f"reference posterior: {table.attrs['reference']}\n")
    _print_table(table, arguments.out, "comparison.csv")
    return 0


def command_select(arguments: argparse.Namespace) -> int:
    _check_out(arguments)
    model_class = model_class_named(arguments.model)
    parameter = arguments.parameter
    words = _names(arguments.values) or []
    kind = int if all(word.lstrip("-").isdigit() for word in words) else float
    values = [kind(word) for word in words]
    _, train, test = _data(arguments, model_class)
    table = select(lambda value: _model(arguments, **{parameter: value}), train, test, values=values,
                   method=arguments.method, name=parameter, criterion=arguments.criterion)
    print(f"{model_class.__name__}: {parameter} in {values}, fitted by {arguments.method}; "
          f"{len(train)} training rows, {len(test)} held out\n")
    _print_table(table, arguments.out, "selection.csv")
    return 0


def _add_data_options(sub: argparse.ArgumentParser) -> None:
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a bundled data set, from `zoo list`")
    source.add_argument("--data", help="your own data: a .csv file (with a header row) or a .npy array")
    sub.add_argument("--columns", default=None, help="--data: the feature columns, comma-separated (default: all others)")
    sub.add_argument("--label", default=None, help="--data: the column of class labels")
    sub.add_argument("--sequence-id", default=None, help="--data: rows sharing this column's value form one sequence")
    sub.add_argument("--time", default=None, help="--data: the order of the rows within a sequence")
    sub.add_argument("--binarize", action="store_true", help="binarise image data (digits, mnist)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--test-fraction", type=float, default=0.2)


def _per_model(
    commands: Any, command: str, help: str, handler: Any, vary_first: bool = False
) -> list[argparse.ArgumentParser]:
    """``zoo COMMAND MODEL``: one sub-command per registered model, with its constructor's
    options (but the one varied by ``select``: its first) and the data options."""
    parser = commands.add_parser(command, help=help)
    models = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    subs = []
    for name in model_names():
        model_class = model_class_named(name)
        varied = list(inspect.signature(model_class.__init__).parameters)[1] if vary_first else None
        sub = models.add_parser(name, help=f"{command} {model_class.__name__}")
        exclude = (varied,) if varied else ()
        sub.set_defaults(handler=handler, parameter=varied, model_name=name, model_options=_add_model_options(sub, model_class, exclude))
        _add_data_options(sub)
        subs.append(sub)
    return subs


def _guides(model_class: type) -> list[str]:
    """The guides a model class takes, read from its declarations (no model is built): the
    generic ones it does not refuse, and its default (its own, e.g. a VAE's "amortized")."""
    names = [name for name in GUIDES if name not in model_class.unsupported_guides]
    if model_class.default_guide and model_class.default_guide not in names:
        names.append(model_class.default_guide)
    return names


def command_tour(arguments: argparse.Namespace) -> int:
    _check_out(arguments)
    start = time.perf_counter()
    run_tour(Path(arguments.out), fast=arguments.fast, progress=not arguments.quiet)
    print(f"\nTour finished in {time.perf_counter() - start:.1f} s; open {Path(arguments.out) / 'index.md'}")
    return 0


def command_leaderboard(arguments: argparse.Namespace) -> int:
    start = time.perf_counter()
    table = leaderboard(fast=arguments.fast, seed=arguments.seed)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    if arguments.out:
        folder = Path(arguments.out)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "leaderboard.csv", index=False)
        print(f"table written to {folder / 'leaderboard.csv'}")
    print(f"\nLeaderboard finished in {time.perf_counter() - start:.1f} s (wall time on this machine)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="Classic generative models in Pyro.")
    parser.add_argument("--version", action="version", version=f"zoo {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="models, methods, guides and data sets")
    listing.set_defaults(handler=command_list)

    for sub in _per_model(commands, "fit", "fit a model to a bundled data set or your own file", command_fit):
        model_class = model_class_named(sub.get_default("model_name"))
        methods = [kind for kind in model_class.methods if kind in METHODS]
        sub.add_argument("--method", default="svi" if "svi" in methods else methods[0], choices=methods,
                         help="how to fit (default: %(default)s)")
        if "svi" in methods:
            guides = ", ".join(_guides(model_class))
            sub.add_argument("--guide", default=None, help=f"guide for svi: {guides} (default: {model_class.default_guide})")
        else:
            sub.set_defaults(guide=None)
        sub.add_argument("--num-steps", type=int, default=2000)
        sub.add_argument("--learning-rate", type=float, default=None)
        sub.add_argument("--batch-size", type=int, default=None, help="minibatch size for svi")
        sub.add_argument("--num-epochs", type=int, default=None, help="train svi by epochs (replaces --num-steps)")
        sub.add_argument("--num-threads", type=int, default=None, help="torch threads while fitting")
        sub.add_argument("--num-posterior-samples", type=int, default=1000, help="draws kept by svi")
        sub.add_argument("--device", default="cpu", help="torch device for svi (cpu, cuda)")
        sub.add_argument("--distributed", action="store_true",
                         help="data-parallel svi or adversarial training across the processes of a torchrun job")
        sub.add_argument("--num-warmup", type=int, default=500)
        sub.add_argument("--num-samples", type=int, default=500)
        sub.add_argument("--num-chains", type=int, default=2)
        sub.add_argument("--out", default=None, help="folder for the InferenceData, table and figure")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")

    for sub in _per_model(commands, "compare", "fit one model by several methods; tabulate them (zoo.compare)", command_compare):
        taken = model_class_named(sub.get_default("model_name")).methods
        # zoo.compare's default methods, those of them this model takes (or its own methods)
        defaults = [method for method in ("svi:delta", "svi:normal", "svi:mvn", "nuts") if method.split(":")[0] in taken]
        sub.add_argument("--methods", default=",".join(defaults or taken),
                         help="comma-separated methods, e.g. svi:delta,svi:mvn,nuts (default: %(default)s)")
        sub.add_argument("--reference", default=None,
                         help="the reference posterior's method (default: exact where the model takes it, else nuts with 2 chains x 1000 draws)")
        sub.add_argument("--out", default=None, help="folder for the table (comparison.csv)")

    select_help = "compare numbers of components or states by LOO and held-out data (zoo.select)"
    for sub in _per_model(commands, "select", select_help, command_select, vary_first=True):
        varied = sub.get_default("parameter")
        sub.add_argument("--values", default="1,2,3,4", help=f"the values of {varied} to try, comma-separated (default: %(default)s)")
        sub.add_argument("--method", default="svi:mvn", help="how each model is fitted (default: %(default)s)")
        sub.add_argument("--criterion", default="loo", choices=("loo", "bic", "aic", "test"),
                         help="what ranks the rows: loo (fits with a posterior), bic or aic (MAP fits, "
                         "--method svi:delta), test (held-out log-likelihood, any fit) (default: %(default)s)")
        sub.add_argument("--out", default=None, help="folder for the table (selection.csv)")

    touring = commands.add_parser("tour", help="fit every model on its bundled data; write a report")
    touring.add_argument("--out", default="zoo-tour", help="folder for the report (default zoo-tour)")
    touring.add_argument("--fast", action="store_true", help="small budgets (for tests)")
    touring.add_argument("--quiet", action="store_true", help="no progress bars")
    touring.set_defaults(handler=command_tour)

    ranking = commands.add_parser("leaderboard", help="fit every explicit and implicit model on the same data; one table")
    ranking.add_argument("--fast", action="store_true", help="small budgets (seconds; for tests)")
    ranking.add_argument("--seed", type=int, default=0)
    ranking.add_argument("--out", default=None, help="folder for the table (leaderboard.csv)")
    ranking.set_defaults(handler=command_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.handler(arguments))
    except Exception as error:  # a command line shows no traceback: one line, exit status 2
        print(f"zoo: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
