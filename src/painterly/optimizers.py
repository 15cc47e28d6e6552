"""torch.optim's LBFGS and Adam, without the ~3 s of CPU that importing torch._dynamo costs.

Every optimizer's constructor calls `Optimizer.add_param_group`, which torch wraps (as `zero_grad`,
`state_dict` and `load_state_dict`) in `torch._disable_dynamo`; `Adam.step` is wrapped in a function
that calls `torch._dynamo.graph_break()`. Both import torch._dynamo on first use, only so that
torch.compile does not trace into them: a third of a short `painterly stylize`, and of every training
process (each torchrun rank). painterly never compiles an optimizer (`train --compile` compiles the
networks), so these subclasses call the functions underneath: the same arithmetic and state, step
hooks included. Where a torch release has no `__wrapped__` to find, torch's own methods run.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

_BASE = torch.optim.Optimizer


def _unwrapped(method: Any) -> Any:
    """The function a `torch._disable_dynamo` wrapper calls (the method itself if it is not wrapped)."""
    return getattr(method, "__wrapped__", method)


class _WithoutDynamo:
    add_param_group = _unwrapped(_BASE.add_param_group)
    zero_grad = _unwrapped(_BASE.zero_grad)
    state_dict = _unwrapped(_BASE.state_dict)
    load_state_dict = _unwrapped(_BASE.load_state_dict)


class LBFGS(_WithoutDynamo, torch.optim.LBFGS):
    """torch.optim.LBFGS (its `step` needs no dynamo: it is only `torch.no_grad`)."""


_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)  # under the profiler hook and `_use_grad_for_differentiable`


class Adam(_WithoutDynamo, torch.optim.Adam):
    """torch.optim.Adam, its `step` under the grad mode `_use_grad_for_differentiable` sets, without its
    graph breaks (which only matter to torch.compile)."""

    def step(self, closure: Any = None) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return _ADAM_STEP(self, closure)
