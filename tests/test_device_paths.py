"""The CUDA code paths, checked on a CPU machine by reading the code: tensors reach a device only
through ``.to(device)`` chosen in one place, and the training step never waits for the device
(no host synchronisation inside the loop that calls ``backward``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cmbert_pipe"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# calls that copy a device value to the host (and so wait for the device)
SYNC_METHODS = {"item", "cpu", "numpy", "tolist", "nonzero", "synchronize"}
SYNC_BUILTINS = {"float", "int", "bool", "print"}


def _calls(node: ast.AST):
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            yield sub


def _training_loops(tree: ast.AST):
    """Every loop whose body calls ``.backward(...)``, innermost first."""
    loops = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While)):
            body = ast.Module(body=node.body, type_ignores=[])
            if any(isinstance(c.func, ast.Attribute) and c.func.attr == "backward"
                   for c in _calls(body)):
                loops.append(node)
    return [lp for lp in loops
            if not any(other is not lp and other in ast.walk(lp) for other in loops)]


def test_no_cuda_method_call_anywhere():
    offenders = []
    for path in SOURCES:
        for call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call.func, ast.Attribute) and call.func.attr == "cuda":
                offenders.append(f"{path.relative_to(PACKAGE)}:{call.lineno}")
    assert not offenders, f".cuda() instead of .to(device): {offenders}"


def _sync_calls(loop: ast.AST) -> list[str]:
    found = []
    for call in _calls(ast.Module(body=loop.body, type_ignores=[])):
        f = call.func
        if isinstance(f, ast.Attribute) and f.attr in SYNC_METHODS:
            found.append(f"{f.attr}() at line {call.lineno}")
        elif isinstance(f, ast.Name) and f.id in SYNC_BUILTINS:
            found.append(f"{f.id}() at line {call.lineno}")
    return found


def test_the_training_step_has_no_host_sync():
    loops = [(path, lp) for path in SOURCES
             for lp in _training_loops(ast.parse(path.read_text(encoding="utf-8")))]
    assert loops, "no training loop found (a loop calling backward)"
    for path, loop in loops:
        found = _sync_calls(loop)
        assert not found, f"{path.relative_to(PACKAGE)}: host sync in the training step: {found}"


@pytest.mark.parametrize("snippet", [
    "for b in batches:\n    loss = model(b)\n    loss.backward()\n    total += loss.item()\n",
    "for b in batches:\n    loss = model(b)\n    loss.backward()\n    print(float(loss))\n",
])
def test_the_check_catches_a_sync(snippet):
    (loop,) = _training_loops(ast.parse(snippet))
    assert _sync_calls(loop)
