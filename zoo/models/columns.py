r"""Rows of mixed type: each column's family, and one density over a row from the shared families.

A row of tabular data may hold real values, binary flags, category indices and a vector of
counts side by side. Naive Bayes (and any model whose components score such rows) names the
family of every column with ``features``: one of :data:`FAMILIES` for all columns, a sequence
with one family per column, or a mapping from column index (or feature name) to family that names
every column exactly once. The "multinomial" columns together form one vector of counts per row;
each categorical column is a family of its own (its own alphabet).

=========================  ================================================================
:func:`check_features`     the constructor's check of ``features``
:func:`column_families`    the family of every column, resolved against the data
:class:`ColumnLayout`      the columns of each family, the blocks of columns that one family
                           instance scores (:meth:`ColumnLayout.blocks`), and the support checks
:class:`MixedColumns`      the distribution of a row: a product over the blocks of their
                           families' distributions (:mod:`zoo.models.families`), event (D,)
=========================  ================================================================

The density of a block is its family's, so a model that scores rows with :class:`MixedColumns`
in its enumerated definition and with each block's :meth:`~zoo.models.families.Family.log_density`
table in its collapsed likelihood computes one density twice by the same function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.poutine.messenger import Messenger

from zoo.models.families import Family, Gaussian
from zoo.models.families_discrete import Bernoulli, Categorical, Multinomial
from zoo.models.family import Params

__all__ = ["FAMILIES", "Block", "ColumnLayout", "MixedColumns", "MixedFamily", "check_features", "column_families", "select_columns"]

FAMILIES = ("gaussian", "bernoulli", "categorical", "multinomial")

Features = str | list[str] | dict[Any, str]


def check_features(features: str | Sequence[str] | Mapping[Any, str]) -> Features:
    """``features`` checked: a family name, a list of them, or a dict (column or name -> family).

    Raises
    ------
    ValueError
        Naming the unknown families, or the wrong kind of argument.
    """
    if isinstance(features, str):
        if features not in FAMILIES:
            raise ValueError(f"features must be one of {FAMILIES} (or a per-column mapping), got {features!r}")
        return features
    if isinstance(features, Mapping):
        bad = {key: value for key, value in features.items() if value not in FAMILIES}
        if bad:
            raise ValueError(f"features maps columns to unknown families {bad}; valid: {FAMILIES}")
        return dict(features)
    if isinstance(features, Sequence):
        bad_list = [value for value in features if value not in FAMILIES]
        if bad_list or not features:
            raise ValueError(f"features lists unknown families {bad_list}; valid: {FAMILIES}")
        return list(features)
    raise ValueError(f"features must be a family name, a list or a mapping, got {type(features).__name__}")


def column_families(features: Features, num_features: int | None, feature_names: Sequence[str] = ()) -> list[str]:
    """The family of each of ``num_features`` columns, given ``features`` (checked).

    Parameters
    ----------
    features : str, list of str or dict
        As :func:`check_features` returns it.
    num_features : int, optional
        D; needed unless ``features`` lists the columns.
    feature_names : sequence of str
        The data's column names, which a mapping may use as keys.

    Returns
    -------
    list of str, length D
    """
    if isinstance(features, str):
        if num_features is None:
            raise ValueError("the number of features is unknown: fit the model first (or pass num_features)")
        return [features] * num_features
    if isinstance(features, list):
        if num_features is not None and len(features) != num_features:
            raise ValueError(f"features lists {len(features)} families but the data has {num_features} columns")
        return list(features)
    if num_features is None:
        raise ValueError("features is a mapping, so the data is needed to resolve it")
    names = list(feature_names)
    families: list[str | None] = [None] * num_features
    for key, family in features.items():
        if isinstance(key, str) and key in names:
            index = names.index(key)
        elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < num_features:
            index = key
        elif isinstance(key, str) and key.isdigit() and int(key) < num_features:
            index = int(key)
        else:
            raise ValueError(f"features names column {key!r}, which the data ({num_features} columns) lacks")
        if families[index] is not None:
            raise ValueError(f"features names column {index} twice")
        families[index] = family
    missing = [index for index, family in enumerate(families) if family is None]
    if missing:
        raise ValueError(f"features does not give a family for columns {missing}")
    return [str(family) for family in families]


def select_columns(x: torch.Tensor, columns: tuple[int, ...]) -> torch.Tensor:
    """x[..., columns], as a view (no copy) when the columns are a contiguous run."""
    first = columns[0]
    if columns == tuple(range(first, first + len(columns))):
        return x[..., first : first + len(columns)]
    return x[..., list(columns)]


class Block(NamedTuple):
    """Columns that one family instance scores together (one categorical column, or every
    column of another family)."""

    family: Family
    columns: tuple[int, ...]


@dataclass(frozen=True)
class ColumnLayout:
    """Which columns belong to which family (column indices into x).

    Attributes
    ----------
    gaussian, bernoulli, categorical, multinomial : tuple of int
        The columns of each family, in order.
    num_categories : tuple of int
        K_j of each categorical column, in column order (empty while unknown).
    num_features : int
        D, all columns.
    """

    gaussian: tuple[int, ...]
    bernoulli: tuple[int, ...]
    categorical: tuple[int, ...]
    multinomial: tuple[int, ...]
    num_categories: tuple[int, ...]
    num_features: int

    @classmethod
    def of(cls, families: list[str], num_categories: Sequence[int] = ()) -> "ColumnLayout":
        """The layout of columns whose families are ``families`` (one per column)."""
        if len(set(families)) == 1:  # one family: no per-column loop (MNIST has 784 columns)
            columns = {family: (tuple(range(len(families))) if family == families[0] else ()) for family in FAMILIES}
        else:
            columns = {family: tuple(i for i, name in enumerate(families) if name == family) for family in FAMILIES}
        return cls(**columns, num_categories=tuple(num_categories), num_features=len(families))

    def blocks(self, total_count: int = 1) -> list[Block]:
        """One family instance per block of columns; ``total_count``: trials per generated row of
        the multinomial block. Categorical blocks need :attr:`num_categories`."""
        if len(self.num_categories) != len(self.categorical):
            raise ValueError(f"the {len(self.categorical)} categorical columns need their num_categories")
        blocks = []
        if self.gaussian:
            blocks.append(Block(Gaussian(num_features=len(self.gaussian)), self.gaussian))
        if self.bernoulli:
            blocks.append(Block(Bernoulli(num_features=len(self.bernoulli)), self.bernoulli))
        for column, size in zip(self.categorical, self.num_categories):
            blocks.append(Block(Categorical(num_categories=size), (column,)))
        if self.multinomial:
            family = Multinomial(num_features=len(self.multinomial), total_count=total_count)
            blocks.append(Block(family, self.multinomial))
        return blocks

    def validate(self, x: torch.Tensor, num_categories: Sequence[int] | None = None) -> None:
        """Raise ValueError unless every column of x (N, D) lies in its family's support (the
        families' own checks), naming the family (and the column beyond an alphabet)."""
        if self.bernoulli and not Bernoulli().in_support(select_columns(x, self.bernoulli)):
            raise ValueError("x holds values other than 0 and 1 in columns with features='bernoulli'")
        if self.multinomial and not Multinomial().in_support(select_columns(x, self.multinomial)):
            raise ValueError("x holds negative or non-integer counts in columns with features='multinomial'")
        if not self.categorical:
            return
        values = select_columns(x, self.categorical)
        if not Categorical().in_support(values):
            raise ValueError("x holds negative or non-integer category indices in columns with features='categorical'")
        if num_categories is None:
            return
        if len(num_categories) != len(self.categorical):
            raise ValueError(
                f"num_categories has {len(num_categories)} entries for {len(self.categorical)} categorical columns"
            )
        beyond = (values >= torch.tensor(num_categories, dtype=values.dtype)).any(0)  # (D_c,)
        if beyond.any():
            index = int(beyond.nonzero()[0, 0])
            raise ValueError(
                f"x column {self.categorical[index]} holds a category beyond the "
                f"{num_categories[index]} the model was set up for"
            )


class MixedColumns(dist.TorchDistribution):
    """A row of mixed families: the product over blocks of columns of their families'
    distributions, event shape (D,).

    Parameters
    ----------
    parts : list of (Block, Distribution)
        Each block with its family's distribution (:meth:`Family.distribution
        <zoo.models.families.Family.distribution>` of its parameters); their batch shapes
        broadcast to this distribution's.
    num_features : int
        D.
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector

    def __init__(self, parts: list[tuple[Block, dist.Distribution]], num_features: int) -> None:
        self.parts = parts
        batch_shape = torch.broadcast_shapes(*(distribution.batch_shape for _, distribution in parts))
        super().__init__(batch_shape, torch.Size([num_features]), validate_args=False)

    def expand(self, batch_shape: Any, _instance: Any = None) -> "MixedColumns":
        parts = [(block, distribution.expand(batch_shape)) for block, distribution in self.parts]
        return MixedColumns(parts, self.event_shape[0])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """sum over blocks of log p(block's columns): (*broadcast(value's batch, batch_shape))."""
        total = torch.zeros(())
        for block, distribution in self.parts:
            columns = select_columns(value, block.columns)
            total = total + distribution.log_prob(block.family.observation(columns, value.dtype))
        return total.expand(torch.broadcast_shapes(total.shape, value.shape[:-1], self.batch_shape))

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        """Each block's columns from its family's distribution: (*sample_shape, *batch_shape, D)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        out = torch.empty(shape)
        for block, distribution in self.parts:
            values = distribution.expand(self.batch_shape).sample(sample_shape)
            if block.family.value_event_dims == 0:  # a category index: no event dim
                out[..., block.columns[0]] = values.to(out.dtype)
            else:
                out[..., list(block.columns)] = values.to(out.dtype)
        return out


class _Prefix(Messenger):
    """Renames every sample site inside it to ``{prefix}_{name}``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        msg["name"] = f"{self.prefix}_{msg['name']}"


@dataclass(frozen=True)
class MixedFamily(Family):
    """Rows of mixed type as one family: each block of columns scored by its own family.

    The sites of a block are its family's, prefixed by the family's name and the block's first
    column (``gaussian0_locs``, ``bernoulli4_probs``, ``categorical6_probs``); the density of a
    row is the product over blocks (:class:`MixedColumns`), its log-density table the sum of the
    blocks' tables. So any model written against :class:`~zoo.models.family.Family` (a mixture
    of any family) takes rows of mixed type.

    Parameters
    ----------
    blocks : tuple of Block
        The blocks (:meth:`ColumnLayout.blocks`), their families ready for :meth:`prior`.
    num_features : int
        D, all columns.
    """

    blocks: tuple[Block, ...] = ()
    num_features: int = 0

    name: ClassVar[str] = "mixed"

    @staticmethod
    def prefix(block: Block) -> str:
        return f"{block.family.name}{block.columns[0]}"

    def _block_params(self, params: Params, block: Block) -> Params:
        prefix = self.prefix(block)
        return {site: params[f"{prefix}_{site}"] for site in block.family.sites}

    def _site(self, name: str) -> tuple[Block, str]:
        for block in self.blocks:
            if name.startswith(self.prefix(block) + "_"):
                return block, name[len(self.prefix(block)) + 1 :]
        raise KeyError(name)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix(block)}_{site}" for block in self.blocks for site in block.family.sites)

    def site_event_dims(self, name: str) -> int:
        block, site = self._site(name)
        return block.family.site_event_dims(site)

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        """Each block's dims, its feature and category dims prefixed (they differ in size)."""
        dims = {}
        for block in self.blocks:
            prefix = self.prefix(block)
            for site, names in block.family.dims(component).items():
                dims[f"{prefix}_{site}"] = [component] + [f"{prefix}_{name}" for name in names[1:]]
        return dims

    def coords(self, feature_names: Sequence[Any]) -> dict[str, list[Any]]:
        """Coordinates of the prefixed dims of :meth:`dims`."""
        coords: dict[str, list[Any]] = {}
        for block in self.blocks:
            prefix, names = self.prefix(block), [feature_names[column] for column in block.columns]
            coords |= {f"{prefix}_feature": names, f"{prefix}_feature_bis": names}
            if isinstance(block.family, Categorical):
                coords[f"{prefix}_category"] = list(range(block.family.num_categories or 0))
        return coords

    def prior(self, dtype: torch.dtype) -> Params:
        params = {}
        for block in self.blocks:
            with _Prefix(self.prefix(block)):
                sampled = block.family.prior(dtype)
            params |= {f"{self.prefix(block)}_{site}": value for site, value in sampled.items()}
        return params

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        parts = [(block, block.family.distribution(self._block_params(params, block), validate_args)) for block in self.blocks]
        return MixedColumns(parts, self.num_features)

    def log_density(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The sum over blocks of their families' tables: (S, *data, K)."""
        return sum(
            block.family.log_density(self._block_params(params, block), select_columns(x, block.columns)) for block in self.blocks
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([block.family.features(select_columns(x, block.columns)) for block in self.blocks], -1)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        params = {}
        for block in self.blocks:
            estimated = block.family.estimates(select_columns(x, block.columns), weights)
            params |= {f"{self.prefix(block)}_{site}": value for site, value in estimated.items()}
        return params

    def order_key(self, params: Params) -> torch.Tensor:
        """The first block's."""
        return self.blocks[0].family.order_key(self._block_params(params, self.blocks[0]))

    def in_support(self, x: torch.Tensor) -> bool:
        return all(block.family.in_support(select_columns(x, block.columns)) for block in self.blocks)

    def validate(self, x: torch.Tensor) -> None:
        """Each block's family's check on its columns."""
        for block in self.blocks:
            block.family.validate(select_columns(x, block.columns))
