"""The layout of the code: no import cycle in keras_kd, small modules, bench and recipes on the public API.

Read from the source files with `ast`, never imported (except where a test
says so), so that these checks hold whatever moves inside the package.

An import counts wherever it stands (at module level or inside a function):
a cycle of lazy imports is still two modules that cannot be understood one
without the other. `from a import b`, where `a.b` is a module, imports
`a.b`; a package's `__init__` that imports its submodules is an ordinary
edge, so a cycle is only reported where modules really import each other.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "keras_kd"
MAX_MODULE_LINES = 600
# What users run on top of the library, which must use its public names only.
CLIENT_FOLDERS = ("bench", "recipes")
# The command line is an application too: the clients start as it does, through keras_kd.launch.
COMMAND_LINE = "keras_kd.cli"


def module_files(root=ROOT):
    """`{module name: source file}` of every module of keras_kd (a package by its `__init__`)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(tree, module, is_package, known_modules):
    """`{imported module: first line}` of every import in `tree`, resolved against `known_modules`.

    Args:
        tree: The parsed source of `module`.
        module: The dotted name of the importing module (to resolve relative imports).
        is_package: Whether `module` is a package's `__init__`.
        known_modules: The names of the modules that exist, to tell `from a import b`
            of a submodule `a.b` from that of a name defined in `a`.
    """
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known_modules else base for alias in node.names
            ]
        else:
            continue
        for name in names:
            found.setdefault(name, node.lineno)
    return found


def _absolute(node, module, is_package):
    """The module a `from ... import` statement names, made absolute."""
    if not node.level:
        return node.module
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    base = package_parts[: len(package_parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root=ROOT):
    """`{module: {imported keras_kd module: line}}` over every module of keras_kd."""
    files = module_files(root)
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imported_modules(tree, module, path.name == "__init__.py", files)
        graph[module] = {name: line for name, line in imports.items() if name in files and name != module}
    return graph


def import_cycles(graph):
    """The strongly connected components of `graph` with more than one module, each sorted.

    Tarjan's algorithm, iterative (no recursion limit on a deep package).
    """
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def describe_cycle(component, graph, files, root=ROOT):
    """The imports inside one cycle, one `file:line: a imports b` per edge."""
    members = set(component)
    return [
        f"{files[module].relative_to(root)}:{line}: {module} imports {imported}"
        for module in component
        for imported, line in sorted(graph[module].items())
        if imported in members
    ]


# ------------------------------------------------------------------ (a) no import cycle


def test_keras_kd_has_no_import_cycle():
    graph, files = import_graph(), module_files()
    cycles = import_cycles(graph)
    assert not cycles, "Import cycles in keras_kd (each module imports the next, at any level):\n" + "\n\n".join(
        "\n".join(describe_cycle(component, graph, files)) for component in cycles
    )


def test_the_cycle_check_finds_a_cycle_of_lazy_imports_and_resolves_submodules(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from keras_kd.sub import parser\n")
    # A parser that imports its application lazily, and an application that imports the parser back.
    (package / "sub" / "parser.py").write_text("def run():\n    from keras_kd.sub import application\n")
    (package / "sub" / "application.py").write_text("from . import parser\n")
    (package / "alone.py").write_text("from keras_kd.sub.parser import run\nimport keras_kd.sub\n")
    graph = import_graph(tmp_path)
    assert graph["keras_kd.alone"] == {"keras_kd.sub.parser": 1, "keras_kd.sub": 2}
    assert graph["keras_kd.sub"] == {"keras_kd.sub.parser": 1}  # A package importing its submodule.
    assert import_cycles(graph) == [["keras_kd.sub.application", "keras_kd.sub.parser"]]
    (package / "sub" / "application.py").write_text("import os\n")
    assert import_cycles(import_graph(tmp_path)) == []


# ------------------------------------------------------------------ (b) bench and recipes on the public API


def client_files(root=ROOT):
    return sorted(path for folder in CLIENT_FOLDERS for path in (root / folder).rglob("*.py"))


def private_uses(path, known_modules):
    """`line: what` for each private keras_kd name, keras_kd.cli import or private attribute that `path` uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [f"{node.lineno}: {problem}" for problem in _import_problems(node, known_modules)]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            # A class's own attributes (self._x) are its business; anyone else's are not.
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{node.lineno}: private attribute .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            found.append(f"{node.lineno}: private attribute {node.func.id}(..., {node.args[1].value!r})")
    return sorted(found, key=lambda use: int(use.split(":", 1)[0]))


def _import_problems(node, known_modules):
    """What one import statement of bench/ or recipes/ takes from keras_kd that it must not."""
    if isinstance(node, ast.Import):
        modules, names = [alias.name for alias in node.names], []
    elif node.level or not node.module:
        return []  # A relative import stays inside bench/ or recipes/.
    else:
        imported = [f"{node.module}.{alias.name}" for alias in node.names]
        # `from a import b` imports the module a.b if there is one, else the name b of a.
        names = [name for name in imported if name not in known_modules]
        modules = [name for name in imported if name in known_modules] + ([node.module] if names else [])
    problems = []
    for module in modules:
        if module.split(".")[0] != PACKAGE:
            continue
        if module == COMMAND_LINE or module.startswith(COMMAND_LINE + "."):
            problems.append(f"imports the command line {module} (use keras_kd.launch)")
        elif any(_is_private(part) for part in module.split(".")):
            problems.append(f"imports the private module {module}")
    return problems + [
        f"imports the private name {name}"
        for name in names
        if name.split(".")[0] == PACKAGE and _is_private(name.rpartition(".")[2])
    ]


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_bench_and_recipes_use_public_names_only_and_not_the_command_line():
    known_modules = module_files()
    offences = {
        str(path.relative_to(ROOT)): uses for path in client_files() if (uses := private_uses(path, known_modules))
    }
    assert len(client_files()) > 20
    assert not offences, "bench/ and recipes/ must use keras_kd's public API only, and start through " + (
        "keras_kd.launch, not keras_kd.cli:\n"
        + "\n".join(f"{file}:{use}" for file, uses in offences.items() for use in uses)
    )


def test_the_public_api_check_finds_each_kind_of_use(tmp_path):
    client = tmp_path / "client.py"
    client.write_text(
        "from keras_kd import cli, launch\n"
        "from keras_kd.cli.arguments import positive_int\n"
        "from keras_kd.backend import _keras_compat\n"
        "from keras_kd.distiller import _private_helper, Distiller\n"
        "import keras_kd._casting\n"
        "distiller._training_on(True)\n"
        "getattr(model, '_hidden')\n"
        "self._own = model.__class__\n"
    )
    known = module_files()
    assert private_uses(client, known) == [
        "1: imports the command line keras_kd.cli (use keras_kd.launch)",
        "2: imports the command line keras_kd.cli.arguments (use keras_kd.launch)",
        "3: imports the private module keras_kd.backend._keras_compat",
        "4: imports the private name keras_kd.distiller._private_helper",
        "5: imports the private module keras_kd._casting",
        "6: private attribute ._training_on",
        "7: private attribute getattr(..., '_hidden')",
    ]


# ------------------------------------------------------------------ (c) small modules


def test_no_module_of_keras_kd_is_over_the_line_limit():
    lengths = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in module_files().values()}
    too_long = sorted(
        f"{path.relative_to(ROOT)}: {count} lines" for path, count in lengths.items() if count > MAX_MODULE_LINES
    )
    assert not too_long, f"Modules of keras_kd over {MAX_MODULE_LINES} lines (split them along a seam):\n" + "\n".join(
        too_long
    )


# ------------------------------------------------------------------ the launch module stays Keras-free


@pytest.mark.parametrize("module", ["keras_kd.launch", "keras_kd.cli"])
def test_importing_the_launch_helpers_imports_no_keras(module):
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(name for name in ('keras', 'tensorflow', 'jax', 'torch') if name in sys.modules)\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} imported {result.stdout.strip()}"
