"""The project modules a stage's code imports, transitively, read from the source (no import runs).

Every import statement counts, also one inside a function (a lazy import still runs when the stage
does), and importing a.b.c runs the package files a/__init__.py and a/b/__init__.py too.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "workflow"


def module_file(root: Path, module: str) -> Path | None:
    """workflow.models.zoo -> workflow/models/zoo.py (or the package's __init__.py); None if not ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = root / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """Dotted names a file imports, relative imports resolved, `from x import y` as x and x.y."""
    package = ".".join(path.relative_to(root).parent.parts)  # what `from . import x` is relative to
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parts, base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def with_packages(module: str) -> list[str]:
    """a.b.c -> [a, a.b, a.b.c]: importing a module runs each enclosing package's __init__."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(entry: str, root: Path) -> set[str]:
    """Repository-relative paths of every project file that `python -m entry` imports."""
    seen: set[Path] = set()
    queue = [f for name in with_packages(entry) if (f := module_file(root, name))]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root):
            for module in with_packages(name):
                found = module_file(root, module)
                if found is not None and found not in seen:
                    queue.append(found)
    return {str(p.relative_to(root)) for p in seen}
