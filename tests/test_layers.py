"""The layers of the package: imports run one way.

``clearsep_data.modeling`` (the ``modeling/`` folder) is a transformers-style model folder that imports nothing else
of ClearSep; the data side (``clearsep_data/``) and training build on it; only the command line
(``clearsep_data/cli/``) uses the Hub staging and pushing of ``clearsep_data.hub``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the package it is installed as (pyproject.toml, [tool.setuptools.package-dir]).
PACKAGES = {"clearsep_data": "clearsep_data", "modeling": "clearsep_data.modeling", "hub": "clearsep_data.hub"}
MODEL_PACKAGE = "clearsep_data.modeling"
HUB_PACKAGE = "clearsep_data.hub"


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> str:
    """The installed dotted name of a source file, e.g. ``modeling/losses.py`` -> ``clearsep_data.modeling.losses``."""
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every module a source imports, anywhere in it (also inside functions).

    ``from package import name`` yields ``package.name`` (a submodule, or a name defined in ``package``, which is
    imported all the same); relative imports are resolved against ``module``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    return imported_modules(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_importing_the_model_package_loads_nothing_else_of_clearsep():
    code = "import sys\nimport clearsep_data.modeling\nprint('\\n'.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = run.stdout.split()
    assert MODEL_PACKAGE + ".modeling_clearsep" in loaded
    outside = [name for name in loaded if is_within(name, "clearsep_data") and name != "clearsep_data"]
    assert [name for name in outside if not is_within(name, MODEL_PACKAGE)] == []


def test_the_model_folder_imports_only_itself_of_clearsep():
    files = sources("modeling")
    assert ROOT / "modeling" / "modeling_clearsep.py" in files
    found = {name for path in files for _, name in imports_of(path)}
    assert MODEL_PACKAGE + ".losses.separation_loss" in found  # the scan sees the package's own imports
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imports_of(path)
        if is_within(name, "clearsep_data") and not is_within(name, MODEL_PACKAGE)
    ]
    assert wrong == []


def test_only_the_command_line_uses_the_hub_package():
    files = [path for path in [*sources("clearsep_data"), *sources("modeling")] if "cli" not in path.relative_to(ROOT).parts]
    assert ROOT / "clearsep_data" / "engine.py" in files and ROOT / "clearsep_data" / "cli" / "push.py" not in files
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imports_of(path)
        if is_within(name, HUB_PACKAGE)
    ]
    assert wrong == []


def test_the_import_scan_sees_every_form():
    source = "\n".join([
        "import clearsep_data",
        "from clearsep_data import hub",
        "def lazy():",
        "    from ..metrics import sdr",
        "from . import losses",
    ])  # fmt: skip
    names = [name for _, name in imported_modules(source, "clearsep_data.modeling.losses")]
    assert names == ["clearsep_data", "clearsep_data.hub", "clearsep_data.modeling.losses", "clearsep_data.metrics.sdr"]
    names = [name for _, name in imported_modules("from .staging import StagedRepo", "clearsep_data.hub", is_package=True)]
    assert names == ["clearsep_data.hub.staging.StagedRepo"]
