"""components/ and pipelines/ use only the public APIs of Ray, MLflow, DVC, torch and Python: a
private module or name (`ray._private`, `ray.train.v2._internal`, `threading._shutdown`) may change
or vanish in any minor release, and the pins allow minor releases."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"components", "pipelines"}
# Underscore names that are their library's documented API.
DOCUMENTED = {"os._exit", "sys._getframe"}
FORBIDDEN_TEXT = ("._internal", "ray._raylet", "ray._common", "ray._private")


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, where: str) -> list[str]:
    """Every use of another library's private module or name in `source`."""
    tree = ast.parse(source)
    found = [f"{where}: mentions {text}" for text in FORBIDDEN_TEXT if text in source]
    modules: dict[str, str] = {}   # local name -> the module or object it was imported as
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]   # `import a.b` binds `a`; `import a.b as c` binds the module a.b
                modules[alias.asname or top] = alias.name if alias.asname else top
                if alias.name.split(".")[0] not in OURS and any(private(p) for p in alias.name.split(".")):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            external = node.module.split(".")[0] not in OURS and node.module != "__future__"
            if external and any(private(p) for p in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if external and private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
                if external:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and modules[base.id].split(".")[0] not in OURS:
                dotted = ".".join([modules[base.id], *reversed(chain)])
                if any(private(part) for part in reversed(chain)) and dotted not in DOCUMENTED:
                    found.append(f"{where}:{node.lineno}: {dotted}")
    return sorted(set(found))


def test_the_scan_finds_each_kind_of_private_use():
    bad = ("import ray._private.worker\nfrom ray.train.v2._internal.x import Y\nfrom ray._raylet import PlacementGroupID\n"
           "import threading\nthreading._shutdown()\nimport atexit as a\na._run_exitfuncs()\n"
           "from torch.nn import _reduction\nimport mlflow\nmlflow.tracking._tracking_service.utils.f()\n")
    found = violations(bad, "bad.py")
    for expected in ("import ray._private.worker", "from ray.train.v2._internal.x", "from ray._raylet",
                     "threading._shutdown", "atexit._run_exitfuncs", "import _reduction",
                     "mlflow.tracking._tracking_service"):
        assert any(expected in line for line in found), (expected, found)
    fine = ("import os\nimport torch\nos._exit(0)\nclass A:\n    def _own(self): self._x = 1\n"
            "torch.nn.functional.relu\nfrom components.models import base\nbase._helper()\nx = {}.__class__\n")
    assert violations(fine, "fine.py") == []


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for folder in OURS
                                        for p in (REPO / folder).rglob("*.py")))
def test_no_private_api_of_another_library(path):
    assert violations((REPO / path).read_text(), path) == []
