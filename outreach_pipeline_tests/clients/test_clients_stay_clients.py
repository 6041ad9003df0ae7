"""Clients speak HTTP and return typed records: no module under clients/ imports pandas, even indirectly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import outreach_pipeline.clients

CLIENTS = Path(outreach_pipeline.clients.__file__).parent


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_client_module_imports_pandas():
    offenders = {
        path.name: [name for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
                    if name == "pandas" or name.startswith("pandas.")]
        for path in sorted(CLIENTS.glob("*.py"))
    }
    assert len(offenders) >= 6  # the scan sees the client modules
    assert {name: found for name, found in offenders.items() if found} == {}


def test_importing_every_client_module_loads_no_pandas():
    # A fresh interpreter: an import of the engine (which uses pandas) from a client would show here.
    modules = [f"outreach_pipeline.clients.{path.stem}" for path in sorted(CLIENTS.glob("*.py"))]
    script = "import importlib, sys\n" + "".join(f"importlib.import_module({name!r})\n" for name in modules)
    script += "print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
