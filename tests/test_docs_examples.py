"""Every code example of the documentation runs, on the backend under test.

The examples are the ```python blocks of README.md and docs/**/*.md, and the
examples in the docstrings of keras_kd's modules (```python blocks and `>>>`
doctests). Each is one test, named by its file and line, run in a fresh
temporary working directory, so that an example which stops working fails the
suite instead of misleading a reader. A block whose first line is
`# not run: <reason>` is reported as skipped with that reason.

The last test checks that the API reference (the `:::` directives of
docs/api/) covers every public name of keras_kd.
"""

import ast
import dataclasses
import doctest
import importlib
import inspect
import pathlib
import pkgutil
import re
import sys
import textwrap

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_kd"
DOCS = ROOT / "docs"
NOT_RUN = "# not run:"

# A fenced block: its opening fence (any indentation, as inside a list item),
# its body, and a closing fence at the same indentation.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)


@dataclasses.dataclass(frozen=True)
class Example:
    path: str  # relative to the repository root
    line: int  # of the first line of code, 1-based
    source: str
    module: str = None  # the module whose namespace a doctest runs in
    doctest: bool = False

    @property
    def id(self):
        return f"{self.path}:{self.line}"


def python_blocks(text):
    """Yields (offset in lines of the first code line, dedented code) per ```python block."""
    for match in FENCE.finditer(text):
        if match.group("lang") != "python":
            continue
        first_line = text.count("\n", 0, match.start("body"))
        yield first_line, textwrap.dedent(match.group("body"))


def markdown_examples():
    files = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        for offset, code in python_blocks(path.read_text(encoding="utf-8")):
            yield Example(relative, offset + 1, code)


def package_modules(path=PACKAGE, prefix="keras_kd"):
    """(module name, source file) of every module of keras_kd, without importing any."""
    yield prefix, path / "__init__.py"
    for info in pkgutil.iter_modules([str(path)]):
        name = f"{prefix}.{info.name}"
        if info.ispkg:
            yield from package_modules(path / info.name, name)
        else:
            yield name, path / f"{info.name}.py"


def docstrings(tree):
    """(line of the docstring's first line, docstring) of the module, its classes and functions."""
    nodes = [tree] + [
        node for node in ast.walk(tree) if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for node in nodes:
        body = getattr(node, "body", [])
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            yield body[0].lineno, inspect.cleandoc(body[0].value.value), body[0].value.value


def docstring_examples():
    for module, path in package_modules():
        relative = path.relative_to(ROOT).as_posix()
        for line, cleaned, raw in docstrings(ast.parse(path.read_text(encoding="utf-8"))):
            # inspect.cleandoc drops the first line's indentation and any
            # leading blank lines; line numbers count from the raw string.
            first_text_line = line + _leading_blank_lines(raw)
            for offset, code in python_blocks(cleaned + "\n"):
                yield Example(relative, first_text_line + offset, code)
            if ">>>" in cleaned:
                first_prompt = next(i for i, text in enumerate(cleaned.split("\n")) if ">>>" in text)
                yield Example(relative, first_text_line + first_prompt, cleaned, module=module, doctest=True)


def _leading_blank_lines(raw):
    lines = raw.split("\n")
    count = 0
    while count < len(lines) - 1 and not lines[count].strip():
        count += 1
    return count


def repeated_code(examples):
    """{id: id of the first example with the same code} for each example repeating an earlier one.

    The same code is the same program whatever its comments say (the README's
    quick start is also the getting-started page's), so it runs once.
    """
    first_id, repeats = {}, {}
    for example in examples:
        if example.doctest:
            continue
        try:
            code = ast.dump(ast.parse(example.source))
        except SyntaxError:
            continue  # test_example_runs reports it, each time.
        first = first_id.setdefault(code, example.id)
        if first != example.id:
            repeats[example.id] = first
    return repeats


EXAMPLES = [*markdown_examples(), *docstring_examples()]
SAME_CODE_AS = repeated_code(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_example_runs(example, tmp_path, monkeypatch):
    first_line = example.source.lstrip().split("\n", 1)[0].strip()
    if first_line.startswith(NOT_RUN):
        pytest.skip(first_line[len(NOT_RUN) :].strip() or "marked `# not run`")
    if example.id in SAME_CODE_AS:
        pytest.skip(f"the same code as {SAME_CODE_AS[example.id]}, which runs")
    monkeypatch.chdir(tmp_path)
    try:
        if example.doctest:
            _run_doctest(example)
        else:
            code = compile(example.source, example.id, "exec")
            exec(code, {"__name__": "__example__"})
    finally:
        # An example may set Keras's global state; the next one starts clean.
        keras.config.set_dtype_policy("float32")
        keras.utils.clear_session()


def _run_doctest(example):
    namespace = dict(vars(importlib.import_module(example.module)))
    parsed = doctest.DocTestParser().get_doctest(example.source, namespace, example.module, example.path, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(parsed, out=report.append)
    failures = runner.summarize(verbose=False).failed
    assert failures == 0, "".join(report)


def test_examples_are_collected():
    """The collector finds the blocks it is meant to (a broken regex would pass every test)."""
    paths = {example.path for example in EXAMPLES}
    assert "README.md" in paths
    assert "keras_kd/distiller.py" in paths
    assert any(path.startswith("docs/guides/") for path in paths)
    sample = "Intro.\n\n- item:\n\n  ```python\n  x = 1\n  ```\n\n```bash\nls\n```\n"
    assert list(python_blocks(sample)) == [(5, "x = 1\n")]
    examples = [Example("a.md", 1, "x = 1  # one\n"), Example("b.md", 3, "x = 1\n"), Example("c.md", 1, "x = 2\n")]
    assert repeated_code(examples) == {"b.md:3": "a.md:1"}


# --- The API reference covers every public name. ---------------------------

API_DIRECTIVE = re.compile(r"^:::\s*([\w.]+)\s*$", re.MULTILINE)
# A program, not library API: its entry point is on the command-line page.
NOT_API = {"keras_kd.__main__"}


def documented_objects():
    """The objects the `:::` directives of docs/api/ render, as {id: dotted path}."""
    objects = {}
    for page in sorted((DOCS / "api").rglob("*.md")):
        for path in API_DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            objects[id(_resolve(path))] = path
    return objects


def _resolve(path):
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def public_modules():
    """keras_kd's modules with no `_` in their path; a subpackage counts as one module."""
    names = [
        name
        for name, _ in package_modules()
        if name not in NOT_API and not any(part.startswith("_") for part in name.split("."))
    ]
    packages = [name for name in names if name != "keras_kd" and (ROOT / name.replace(".", "/")).is_dir()]
    return [name for name in names if not any(name.startswith(package + ".") for package in packages)]


def public_names(module):
    """`__all__`, else the classes and functions the module (or its subpackage) defines."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return sorted(names)
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith(module.__name__)
    )


def test_api_reference_covers_every_public_name():
    documented = documented_objects()
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if id(module) in documented and module_name != "keras_kd":
            continue  # the whole module is rendered, its public members with it
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.ismodule(value) and value.__name__ in public_modules():
                continue  # checked name by name as a module of its own
            defining_module = sys.modules.get(getattr(value, "__module__", None))
            if id(value) not in documented and id(defining_module) not in documented:
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        f"The API reference (docs/api/*.md) has no `:::` directive for {missing}; "
        "add one per name (or one for the whole module)."
    )
