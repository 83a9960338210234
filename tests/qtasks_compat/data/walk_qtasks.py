"""Print QTasks' public import paths (run with QTasks installed; not a test): every module of the installed
package, walked on disk so that modules whose optional dependency is absent (Kafka, RabbitMQ, gRPC, Django) count
too, and every public class or function each defines or, for a package, re-exports; ``module`` or
``module:name``, one a line. A module that cannot be imported is read with ``ast`` instead."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib


def public_names(mod: str, path: pathlib.Path) -> list[str]:
    package = path.name == "__init__.py"
    try:
        module = importlib.import_module(mod)
    except Exception:  # noqa: BLE001 - an optional dependency is missing: read the source
        return source_names(path, package)
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [n for n, o in vars(module).items() if (inspect.isclass(o) or inspect.isfunction(o))
            and getattr(o, "__module__", "").startswith("qtasks") and (o.__module__ == mod or package)]


def source_names(path: pathlib.Path, package: bool) -> list[str]:
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            assert isinstance(node.value, (ast.List, ast.Tuple))
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        elif isinstance(node, ast.ImportFrom) and package and (node.level or (node.module or "").startswith("qtasks")):
            names += [a.asname or a.name for a in node.names]
    return names


def main() -> None:
    import qtasks

    root = pathlib.Path(qtasks.__file__).parent
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(p.startswith("_") for p in parts[1:]):
            continue
        mod = ".".join(parts)
        print(mod)
        for name in sorted(set(public_names(mod, path))):
            if not name.startswith("_"):
                print(f"{mod}:{name}")


if __name__ == "__main__":
    main()
