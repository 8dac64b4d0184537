"""Recording tensor operations for replay.

:func:`record` runs a function once and keeps every ATen operation it ran, its backward passes
included, as a ``torch.fx`` graph. :func:`is_recording` says when operations are being recorded:
a recording (:func:`record`, ``torch.jit.trace``) keeps the branch Python took at the point it
was recorded at, for every later point, so a function that branches on a tensor's value (a
numerical fallback) must take its value-free path while it is recorded.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

# TorchDispatchMode is the extension point that PyTorch's "Extending PyTorch" guide documents for
# seeing every ATen operation below autograd, backward passes included; it lives in a private
# module, and make_fx (torch.fx.experimental) is built on it. make_fx itself imports the
# compiler (torch._inductor, torch._dynamo): more than a second on a fresh process's first fit.
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["is_recording", "record", "recording"]

_RECORDING: ContextVar[bool] = ContextVar("zoo_recording", default=False)


def is_recording() -> bool:
    """True under ``torch.jit.trace`` or inside :func:`recording`."""
    return _RECORDING.get() or torch.jit.is_tracing()


@contextmanager
def recording() -> Iterator[None]:
    """Mark the operations run inside as recorded for replay (see :func:`is_recording`)."""
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def record(function: Callable[..., tuple[torch.Tensor, ...]], *inputs: torch.Tensor) -> torch.fx.GraphModule:
    """``function(*inputs)`` run once, and every ATen operation it ran (those of any
    ``torch.autograd.grad`` inside it included) kept as a ``torch.fx`` graph of those operations.

    Parameters
    ----------
    function
        Takes tensors shaped like ``inputs`` and returns a tuple of tensors.
    inputs
        The point it is recorded at.

    Returns
    -------
    torch.fx.GraphModule
        Called with tensors shaped like ``inputs``, runs the recorded operations on them and
        returns what ``function`` returned. Tensors that ``function`` read but did not compute
        from ``inputs`` (data, index tensors) are kept as the module's buffers; numbers Python
        read off a tensor (a size check, a count) are kept as the numbers read, and a branch on
        one is the branch taken at ``inputs``. Each node's ``meta["val"]`` holds its value at
        ``inputs``.
    """
    module = torch.nn.Module()
    graph = torch.fx.Graph()
    recorder = _Recorder(module, graph)
    for index, tensor in enumerate(inputs):
        recorder.remember(tensor, graph.placeholder(f"input_{index}"))
    with recorder, recording():
        outputs = function(*inputs)
    graph.output(tuple(recorder.node_of(output) for output in outputs))
    return torch.fx.GraphModule(module, graph)


class _Recorder(TorchDispatchMode):
    """Adds a node to ``graph`` for every ATen operation run while it is active."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # True (the default) wraps __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports the compiler; a recording never runs under torch.compile
        return False

    def __init__(self, module: torch.nn.Module, graph: torch.fx.Graph) -> None:
        super().__init__()
        self.module = module
        self.graph = graph
        # keyed by id(); the tensor is kept alive beside its node so an id is never reused
        self.nodes: dict[int, tuple[torch.Tensor, torch.fx.Node]] = {}
        self.constants = 0

    def remember(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        node.meta["val"] = tensor
        self.nodes[id(tensor)] = (tensor, node)

    def node_of(self, tensor: torch.Tensor) -> torch.fx.Node:
        known = self.nodes.get(id(tensor))
        if known is not None and known[0] is tensor:
            return known[1]
        # a tensor not computed in the recording: a constant, copied as it is now, before any
        # recorded in-place operation changes it
        name = f"_constant_{self.constants}"
        self.constants += 1
        self.module.register_buffer(name, tensor.detach().clone())
        node = self.graph.get_attr(name)
        self.remember(tensor, node)
        return node

    def arguments(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self.node_of(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.arguments(inner) for inner in value)
        if isinstance(value, dict):
            return {key: self.arguments(inner) for key, inner in value.items()}
        return value

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        # the operands' nodes first: a constant is copied before an in-place operation changes it
        arguments, keywords = self.arguments(args), self.arguments(kwargs or {})
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor):
            self.remember(result, self.graph.call_function(func, arguments, keywords))
        elif isinstance(result, (list, tuple)) and any(isinstance(inner, torch.Tensor) for inner in result):
            node = self.graph.call_function(func, arguments, keywords)
            for index, inner in enumerate(result):
                if isinstance(inner, torch.Tensor):
                    self.remember(inner, self.graph.call_function(operator.getitem, (node, index)))
        # anything else is a number read off a tensor: Python keeps it, and so does the recording
        return result
