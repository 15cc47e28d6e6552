"""painterly.optimizers: torch.optim's LBFGS and Adam, step for step, without importing torch._dynamo."""

import copy
import subprocess
import sys

import pytest
import torch

from painterly import optimizers

# A fresh process (this one has torch._dynamo already: torchvision imports it): both optimizers built,
# stepped, zeroed, saved and restored, and torch._dynamo still not imported.
CHECK = """
import sys
import torch
from painterly.optimizers import LBFGS, Adam
x = torch.ones(3, requires_grad=True)
for make in (lambda: LBFGS([x], max_iter=1), lambda: Adam([x], lr=0.1)):
    optimizer = make()
    def closure():
        optimizer.zero_grad()
        loss = (x ** 2).sum()
        loss.backward()
        return loss
    optimizer.step(closure)
    optimizer.load_state_dict(optimizer.state_dict())
print("torch._dynamo" in sys.modules, float(x.sum()) < 3)
"""


def test_building_and_stepping_them_does_not_import_dynamo():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]  # no dynamo, and the steps did move x


def _steps(make, steps: int) -> tuple[list[float], torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 5, generator=generator)
    x = torch.zeros(2, 5, requires_grad=True)
    optimizer = make([x])
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = ((x - target) ** 4).sum() + (x ** 2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(optimizer.step(closure).detach()))
    return losses, x.detach(), optimizer.state_dict()


@pytest.mark.parametrize(("ours", "theirs", "settings"), [
    (optimizers.LBFGS, torch.optim.LBFGS, {"lr": 0.5, "max_iter": 1, "history_size": 5}),
    (optimizers.Adam, torch.optim.Adam, {"lr": 0.05}),
])
def test_the_same_steps_and_state_as_torchs(ours, theirs, settings, one_thread):
    mine, x_mine, state_mine = _steps(lambda params: ours(params, **settings), 6)
    reference, x_reference, state_reference = _steps(lambda params: theirs(params, **settings), 6)
    assert mine == reference and mine[-1] < mine[0]  # bit for bit, and it did optimise
    assert torch.equal(x_mine, x_reference)
    assert state_mine["param_groups"] == state_reference["param_groups"]
    assert state_mine["state"].keys() == state_reference["state"].keys()
    for name, value in state_reference["state"][0].items():  # LBFGS: tensors, lists of them and numbers
        mine_value = state_mine["state"][0][name]
        pairs = zip(mine_value, value, strict=True) if isinstance(value, list) else [(mine_value, value)]
        for a, b in pairs:
            assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b, name


def test_a_restored_adam_continues_as_the_original(one_thread):
    x = torch.ones(4, requires_grad=True)
    first = optimizers.Adam([x], lr=0.1)
    (x ** 2).sum().backward()
    first.step()
    y = x.detach().clone().requires_grad_(True)
    second = optimizers.Adam([y], lr=0.1)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as from a checkpoint: not first's tensors
    for optimizer, z in ((first, x), (second, y)):
        optimizer.zero_grad()
        (z ** 2).sum().backward()
        optimizer.step()
    assert torch.equal(x, y) and not torch.equal(x, torch.ones(4))
    assert float(first.state_dict()["state"][0]["step"]) == 2
