"""Every public module, class and function of w2slab has a docstring (STYLE.md §12)."""
import importlib
import inspect
import pkgutil

import w2slab


def _public_objects():
    for info in pkgutil.walk_packages(w2slab.__path__, "w2slab."):
        module = importlib.import_module(info.name)
        yield info.name, module
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj


def test_public_docstrings_exist():
    missing = [name for name, obj in _public_objects() if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"missing docstrings: {missing}"
