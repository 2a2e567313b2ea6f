"""Peak bytes of live tensors during a computation, exactly, without running it: a memory model.

Run the computation on the meta device (shapes, dtypes and memory formats, no data) inside `LiveBytes`: every
tensor an operator returns is counted from its creation until the last tensor sharing its storage is
garbage-collected, which in eager PyTorch is when the caching allocator gets the block back. So the peak
equals what `torch.cuda.max_memory_allocated` reports for the same eager code on a GPU, minus cuDNN's
workspace and the allocator's rounding (benchmarks/memory_model.py prints the figures; inference.py's
`CUDA_BYTES_PER_PIXEL` is built on them).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Tracks storages created inside the mode; `peak` is the most bytes alive at once (inputs created
    before entering do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storage_of: dict[int, int] = {}  # id(tensor) -> storage key
        self._refs: dict[int, int] = {}  # storage key -> live tensors using it
        self._bytes: dict[int, int] = {}
        self._next_key = 0

    def _hold(self, tensor: torch.Tensor, key: int) -> None:
        self._refs[key] += 1
        self._storage_of[id(tensor)] = key
        weakref.finalize(tensor, self._release, key, id(tensor))

    def _release(self, key: int, tensor_id: int) -> None:
        self._storage_of.pop(tensor_id, None)
        self._refs[key] -= 1
        if self._refs[key] == 0:
            self.live -= self._bytes.pop(key)
            del self._refs[key]

    def _new_storage(self, tensor: torch.Tensor) -> None:
        key, self._next_key = self._next_key, self._next_key + 1
        self._bytes[key] = tensor.untyped_storage().nbytes()
        self._refs[key] = 0
        self.live += self._bytes[key]
        self.peak = max(self.peak, self.live)
        self._hold(tensor, key)

    def _aliased_key(self, func, args: tuple, kwargs: dict) -> int | None:
        """The storage of the input this output aliases (a view or an in-place result), if it is tracked."""
        for argument in func._schema.arguments:
            value = kwargs.get(argument.name)
            if value is None and not argument.kwarg_only:
                position = func._schema.arguments.index(argument)
                value = args[position] if position < len(args) else None
            if argument.alias_info is not None and isinstance(value, torch.Tensor):
                return self._storage_of.get(id(value))
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        for index, tensor in enumerate(outputs):
            if id(tensor) in self._storage_of:
                continue
            returns = func._schema.returns
            aliasing = index < len(returns) and returns[index].alias_info is not None
            if not aliasing:
                self._new_storage(tensor)
            elif (key := self._aliased_key(func, args, kwargs)) is not None:
                self._hold(tensor, key)
        return out
