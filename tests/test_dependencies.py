"""setup.py declares what the code imports, and nothing it never imports (no dead
dependencies); docstrings name modules that exist."""
import ast
import importlib.metadata as md
import os
import re

from conftest import REPO

# Declared for another package's sake, not imported by us (the comment in setup.py says why).
NOT_IMPORTED_ON_PURPOSE = {"importlib-resources", "onnx"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_requirements():
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "RUNTIME":
            return [_norm(re.split(r"[<>=~!\[ ]", ast.literal_eval(e))[0]) for e in node.value.elts]
    raise AssertionError("setup.py has no RUNTIME list")


def _imported_distributions():
    top = set()
    for root, _, files in os.walk(os.path.join(REPO, "slm_tf")):
        for f in files:
            if f.endswith(".py"):
                tree = ast.parse(open(os.path.join(root, f), encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        top |= {a.name.split(".")[0] for a in node.names}
                    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        top.add(node.module.split(".")[0])
    dists = md.packages_distributions()  # import name -> distributions (installed metadata)
    return {_norm(d) for name in top for d in dists.get(name, [])}


def test_every_runtime_dependency_is_imported():
    unused = set(_runtime_requirements()) - _imported_distributions() - NOT_IMPORTED_ON_PURPOSE
    assert not unused, f"setup.py installs {sorted(unused)} but slm_tf never imports them"


def test_export_docstring_names_existing_modules():
    import slm_tf.export as export
    named = set(re.findall(r"``(\w+)``", export.__doc__))
    here = os.path.dirname(export.__file__)
    missing = [n for n in named if n != "__init__" and not os.path.exists(os.path.join(here, f"{n}.py"))]
    assert named and not missing, f"slm_tf/export/__init__.py names missing modules {missing}"
