"""The pure core (rollout/, traffic/, runtimes/, api/, render.py) never imports the API client,
Kopf or the kubernetes package: it plans from observations and can be tested without a cluster."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "operator" / "modelpilot"
CORE = sorted(p for d in ("rollout", "traffic", "runtimes", "api") for p in (PKG / d).glob("*.py")) + [PKG / "render.py"]
FORBIDDEN = ("kubernetes", "kopf", "modelpilot.kube", "modelpilot.handlers", "modelpilot.cache", "modelpilot.workqueue")


def _imports(source: str, package: list[str]) -> set[str]:
    """Absolute names of the modules `source` (a module of `package`) imports, relative imports resolved."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PKG)))
def test_the_pure_core_imports_no_client(path: Path) -> None:
    package = ["modelpilot", *path.relative_to(PKG).parent.parts]
    bad = sorted(m for m in _imports(path.read_text(), package) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{path.relative_to(PKG)} imports {bad}: the pure core must not reach the API client"


def test_the_check_sees_a_client_import() -> None:
    assert "modelpilot.kube.KubeClient" in _imports("from ..kube import KubeClient\n", ["modelpilot", "rollout"])
    assert "kubernetes.client" in _imports("import kubernetes.client\n", ["modelpilot"])
