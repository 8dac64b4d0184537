"""Recording tensor operations for replay.

:func:`record` runs a function once and keeps every ATen operation it ran, its backward passes
included, as a ``torch.fx`` graph. :func:`is_recording` says when operations are being recorded:
a recording (:func:`record`, ``torch.jit.trace``) keeps the branch Python took at the point it
was recorded at, for every later point, so a function that branches on a tensor's value (a
numerical fallback) must take its value-free path while it is recorded.
"""

from __future__ import annotations

import operator
import warnings
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

__all__ = ["is_recording", "record", "recording", "replay", "replayable"]

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


def replayable(function: Callable[..., tuple[torch.Tensor, ...]], *inputs: torch.Tensor) -> Any:
    """``function`` recorded once at ``inputs`` (:func:`record`), cleaned of the operations that
    do no work in a replay (:func:`_simplified`), as a TorchScript function to :func:`replay`.

    Every remaining operation is one recorded, on the same operands, so a replay computes what
    ``function`` computes, to the bit, wherever ``function`` takes the branches it took at
    ``inputs``: the caller's promise (a recording keeps the branches taken, and a number Python
    read off a tensor). Random operations are kept and draw afresh at every replay, from the
    generator that ``function`` drew from, in the same order.

    Parameters
    ----------
    function, inputs
        As for :func:`record`.

    Returns
    -------
    torch.jit.ScriptModule
        Call it through :func:`replay`.
    """
    with warnings.catch_warnings():
        # the tracer warns wherever Python reads a number off a tensor (shape checks, sizes): the
        # caller promised that none of them depends on the inputs
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated", category=DeprecationWarning)
        graph = _simplified(record(function, *inputs))
        with torch.no_grad():
            return torch.jit.trace(graph, tuple(inputs), check_trace=False)


def replay(graph: Any, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the recorded ``function`` of :func:`replayable` returns at ``tensors``, with no
    autograd graph."""
    # Replayed op by op: TorchScript's optimising executor rewrites a graph after a few calls, so
    # the numbers would depend on how many calls came before (a NUTS chain in its own process
    # drifted from the same chain run second in sequence).
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return tuple(graph(*tensors))


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


def _simplified(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The recorded graph with the operations that do no work in a replay removed: ``detach``
    (an identity without autograd), reads whose numbers the recording kept (argument checks),
    and every operation none of whose inputs depends on the point, computed once here and kept
    as a constant (index tensors, functions of the data alone) unless an in-place operation
    writes to it (:func:`_written_in_place`); operations repeated or doing nothing are dropped
    (:func:`_without_repeats`), and the Python numbers of arithmetic become constants of their
    operand's dtype (:func:`_numbers_as_tensors`). Each remaining operation is one recorded, on
    the same operands, so the replay's numbers do not change."""
    graph = module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.detach.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph.eliminate_dead_code()
    written = _written_in_place(graph)
    for node in [node for node in written if node.op == "get_attr"]:
        # a kept tensor that an operation writes to is copied at every replay, so that no replay
        # starts from what the one before it wrote
        with graph.inserting_after(node):
            copy = graph.call_function(torch.ops.aten.clone.default, (node,))
        node.replace_all_uses_with(copy, delete_user_cb=lambda user: user is not copy)
        written.add(copy)
    constants: dict[torch.fx.Node, Any] = {}
    for node in graph.nodes:
        if node in written:
            continue
        if node.op == "get_attr":
            constants[node] = getattr(module, str(node.target))
        elif node.op == "call_function" and not node.is_impure() and all(
            inner in constants for inner in node.all_input_nodes
        ):
            arguments, keywords = torch.fx.node.map_arg((node.args, node.kwargs), lambda inner: constants[inner])
            constants[node] = node.target(*arguments, **keywords)
    # an operation may return its input itself (lift_fresh): one buffer, under its first name
    buffer_names = {id(buffer): name for name, buffer in module.named_buffers()}
    for index, (node, value) in enumerate(constants.items()):
        if node.op == "get_attr" or not isinstance(value, torch.Tensor):
            continue
        if any(user not in constants for user in node.users):
            if id(value) not in buffer_names:
                buffer_names[id(value)] = f"_folded_{index}"
                module.register_buffer(f"_folded_{index}", value)
            with graph.inserting_before(node):
                node.replace_all_uses_with(graph.get_attr(buffer_names[id(value)]))
    graph.eliminate_dead_code()
    _without_repeats(graph, written)
    _numbers_as_tensors(module)
    module.recompile()
    return module


def _written_in_place(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes whose tensors an in-place operation of ``graph`` writes to, with every tensor
    they are views of: none of them may be computed once and kept, or each replay would start
    from what the last one wrote."""
    written: set[torch.fx.Node] = set()
    for node in graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None or not schema.is_mutable:
            continue
        stack = [
            value
            for argument, value in zip(schema.arguments, node.args)
            if argument.alias_info is not None and argument.alias_info.is_write and isinstance(value, torch.fx.Node)
        ]
        while stack:
            inner = stack.pop()
            written.add(inner)
            if inner.op != "call_function":
                continue
            if inner.target is operator.getitem:
                stack.append(inner.args[0])
                continue
            inner_schema = getattr(inner.target, "_schema", None)
            if inner_schema is not None and any(result.alias_info is not None for result in inner_schema.returns):
                stack.append(inner.args[0])
    return written


def _without_repeats(graph: torch.fx.Graph, written: set[torch.fx.Node]) -> None:
    """Drops what a recording of a forward and a backward pass repeats: an operation already
    done on the same operands (the backward pass recomputes what the forward pass had), a
    ``view`` or ``expand`` to the shape its operand already has, and a negation feeding an
    addition or subtraction (``a + (-b)`` is ``a - b`` to the last bit: IEEE subtraction is the
    addition of the negation). Nothing that an in-place operation writes to, or reads after a
    write, is touched."""
    aten = torch.ops.aten
    done: dict[Any, torch.fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.is_impure() or node in written:
            continue
        if any(inner in written for inner in node.all_input_nodes):
            continue
        if node.target in (aten.view.default, aten.expand.default):
            operand, result = node.args[0], node.meta.get("val")
            if isinstance(result, torch.Tensor) and isinstance(operand, torch.fx.Node):
                example = operand.meta.get("val")
                if isinstance(example, torch.Tensor) and example.shape == result.shape:
                    node.replace_all_uses_with(operand)
                    graph.erase_node(node)
                    continue
        if node.target in (aten.add.Tensor, aten.sub.Tensor) and len(node.args) == 2 and not node.kwargs:
            left, right = node.args
            if isinstance(right, torch.fx.Node) and right.target is aten.neg.default and right.args[0] not in written:
                node.target = aten.sub.Tensor if node.target is aten.add.Tensor else aten.add.Tensor
                node.args = (left, right.args[0])
        key = (node.target, _operand_key(node.args), _operand_key(node.kwargs))
        if key in done:
            node.replace_all_uses_with(done[key])
            graph.erase_node(node)
        else:
            done[key] = node
    graph.eliminate_dead_code()


def _operand_key(value: Any) -> Any:
    """A hashable stand-in for an operation's operands (a float by its repr: -0.0 is not 0.0)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_operand_key(inner) for inner in value))
    if isinstance(value, dict):
        return ("dict", tuple((name, _operand_key(inner)) for name, inner in sorted(value.items())))
    if isinstance(value, torch.fx.Node):
        return value
    return (type(value).__name__, repr(value))


#: Binary arithmetic whose second operand may be a Python number -> its tensor-operand overload.
_ARITHMETIC = {
    overload: getattr(torch.ops.aten, name).Tensor
    for name in ("mul", "add", "sub", "div")
    for overload in (getattr(torch.ops.aten, name).Tensor, getattr(torch.ops.aten, name).Scalar)
}


def _numbers_as_tensors(module: torch.fx.GraphModule) -> None:
    """``x * 0.5`` with a Python number: at every call ATen wraps the number in a double tensor
    and converts it to x's dtype. Here it becomes a 0-dim constant of x's dtype, made once:
    ATen casts the wrapped number to that dtype before multiplying, so the arithmetic is the
    same."""
    graph = module.graph
    for index, node in enumerate(graph.nodes):
        target = _ARITHMETIC.get(node.target) if node.op == "call_function" else None
        if target is None or len(node.args) != 2 or node.kwargs:
            continue
        tensor, number = node.args
        example = tensor.meta.get("val") if isinstance(tensor, torch.fx.Node) else None
        if (
            not isinstance(example, torch.Tensor)
            or not example.is_floating_point()
            or isinstance(number, bool)
            or not isinstance(number, (int, float))
        ):
            continue
        module.register_buffer(f"_number_{index}", torch.tensor(number, dtype=example.dtype))
        with graph.inserting_before(node):
            constant = graph.get_attr(f"_number_{index}")
        node.target, node.args = target, (tensor, constant)
