"""Outside `keras_kd/backend/_keras_compat.py`, keras_kd reads no private Keras or keras-tuner API.

A static scan of the library's source for `keras.src` / `keras_tuner.src`
imports and for private names that the installed Keras or keras-tuner use:
attributes read on any object, attributes and methods of a class's Keras
bases used through `self`, names in `getattr`-like calls and keyword
arguments. Each finding names its file and line.
"""

import ast
import functools
import importlib
import importlib.util
import inspect
import pathlib
import re

import keras
import pytest

import keras_kd

LIBRARY = pathlib.Path(keras_kd.__file__).parent
COMPAT = LIBRARY / "backend" / "_keras_compat.py"
PRIVATE_PACKAGES = ("keras.src", "keras_tuner.src")
ATTRIBUTE_FUNCTIONS = {"getattr", "hasattr", "setattr", "delattr", "__getattribute__", "__setattr__", "__delattr__"}

# Private names keras_kd reads on objects that are not Keras's, though Keras uses the name too; each with why.
OWN_PRIVATE_ATTRIBUTES = {
    "_replace": "namedtuple's documented copy-with-changes method",
}


@functools.cache
def keras_private_names():
    """Every private name (`_name`) in the installed Keras's and keras-tuner's source."""
    names = set()
    for package in ("keras", "keras_tuner"):
        spec = importlib.util.find_spec(package)
        if spec is not None:
            for path in pathlib.Path(spec.origin).parent.rglob("*.py"):
                names.update(re.findall(r"\b_[A-Za-z]\w*", path.read_text(errors="ignore")))
    return frozenset(names)


def library_files():
    return sorted(path for path in LIBRARY.rglob("*.py") if path != COMPAT)


def module_name(path):
    return ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts).removesuffix(".__init__")


def is_private(name):
    return name.startswith("_") and not name.startswith("__")


def is_keras_private(name):
    return is_private(name) and name in keras_private_names() and name not in OWN_PRIVATE_ATTRIBUTES


def is_own_object(node):
    """`self`, `cls` or `super()`: its private attributes are checked against the class's Keras bases."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def keras_base_names(cls):
    """The private attribute and method names the Keras and keras-tuner classes of `cls`'s MRO define."""
    names = set()
    for base in cls.__mro__:
        if not base.__module__.startswith(("keras.", "keras_tuner.")):
            continue
        names.update(name for name in vars(base) if is_private(name))
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"\bself\.(_[A-Za-z]\w*)\s*=(?!=)", source))
    return names


def keras_names_by_class(module):
    """{name of a class defined in `module`: the Keras private names it may not use}.

    A mixin gets the names of the Keras classes it is mixed into.
    """
    by_class = {}
    classes = [
        value for value in vars(module).values() if inspect.isclass(value) and value.__module__ == module.__name__
    ]
    for cls in classes:
        keras_names = keras_base_names(cls)
        for own in cls.__mro__:
            if own.__module__ == module.__name__:
                by_class.setdefault(own.__name__, set()).update(keras_names)
    return by_class


def private_package(name):
    return any(name == package or name.startswith(package + ".") for package in PRIVATE_PACKAGES)


def findings_in(path, keras_names_of_class, root=LIBRARY.parent):
    """`file:line: what` for each private Keras/keras-tuner API `path`'s source uses."""
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(root)
    findings = []

    def visit(node, class_keras_names):
        if isinstance(node, ast.ClassDef):
            class_keras_names = keras_names_of_class.get(node.name, set())
        report = None
        if isinstance(node, ast.Import):
            report = next((alias.name for alias in node.names if private_package(alias.name)), None)
        elif isinstance(node, ast.ImportFrom) and node.module and private_package(node.module):
            report = f"from {node.module} import ..."
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and private_package(node.value):
            report = f"{node.value!r}"
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            if is_own_object(node.value):
                if node.attr in class_keras_names:
                    report = ast.unparse(node)
            elif is_keras_private(node.attr):
                report = ast.unparse(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in class_keras_names:
            report = f"def {node.name} (overrides a private method)"
        elif isinstance(node, ast.Call):
            report = private_name_in_call(node, class_keras_names)
        if report:
            findings.append(f"{where}:{node.lineno}: {report}")
        for child in ast.iter_child_nodes(node):
            visit(child, class_keras_names)

    visit(tree, set())
    return findings


def private_name_in_call(call, class_keras_names):
    """A private attribute named by a string in a `getattr`-like call, or a private keyword argument."""
    function = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if function in ATTRIBUTE_FUNCTIONS and len(call.args) >= 2:
        target, name = call.args[0], call.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str) and is_private(name.value):
            if name.value in class_keras_names if is_own_object(target) else is_keras_private(name.value):
                return f"{function}(..., {name.value!r})"
    if function in ("get", "pop") and call.args:
        key = call.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and is_keras_private(key.value):
            return f"{function}({key.value!r}) (a private keyword argument)"
    for keyword in call.keywords:
        if keyword.arg and is_keras_private(keyword.arg):
            return f"{keyword.arg}=... (a private keyword argument)"
    return None


def all_findings():
    """The findings in every library file; its modules imported to know which classes derive from Keras's."""
    pytest.importorskip("keras_tuner")  # keras_kd.tuning's classes derive from its classes.
    # The other backends' packages stay unimported (their frameworks need
    # not load together); their classes derive from keras_kd's roles only.
    other_backends = tuple(
        f"keras_kd.backend.{name}" for name in ("jax", "tensorflow", "torch") if name != keras.config.backend()
    )
    findings = []
    for path in library_files():
        name = module_name(path)
        imported = not name.startswith(other_backends)
        findings += findings_in(path, keras_names_by_class(importlib.import_module(name)) if imported else {})
    return findings


def test_outside_the_compat_module_keras_kd_reads_no_private_keras_api():
    assert all_findings() == []


def test_each_allowed_private_attribute_is_still_read_and_a_keras_name():
    read = "\n".join(path.read_text() for path in library_files())
    assert [name for name in OWN_PRIVATE_ATTRIBUTES if f".{name}" not in read] == []
    assert [name for name in OWN_PRIVATE_ATTRIBUTES if name not in keras_private_names()] == []


SAMPLE = """
import keras
from keras.src.backend import get_keras_mask
import keras_tuner.src.engine.tuner


class Tracked(keras.Model):
    def step(self):
        self._own_counter = 1
        return self._loss_tracker, self._own_counter

    def _flatten_layers(self):
        return super()._flatten_layers()


def read(model, kwargs):
    getattr(model, "_compile_metrics")
    kwargs.get("_use_cached_eval_dataset")
    model.fit(_use_cached_eval_dataset=True)
    model._keras_kd_own_state = model._keras_kd_own_state
    return model._layers, "keras.src.losses"
"""


def test_the_scan_finds_each_kind_of_private_api(tmp_path):
    path = tmp_path / "keras_kd" / "sample.py"
    path.parent.mkdir()
    path.write_text(SAMPLE)
    keras_names = keras_base_names(keras.Model)
    findings = [line.split(": ", 1)[1] for line in findings_in(path, {"Tracked": keras_names}, root=tmp_path)]
    assert findings == [
        "from keras.src.backend import ...",
        "keras_tuner.src.engine.tuner",
        "self._loss_tracker",
        "def _flatten_layers (overrides a private method)",
        "super()._flatten_layers",
        "getattr(..., '_compile_metrics')",
        "get('_use_cached_eval_dataset') (a private keyword argument)",
        "_use_cached_eval_dataset=... (a private keyword argument)",
        "model._layers",
        "'keras.src.losses'",
    ]
