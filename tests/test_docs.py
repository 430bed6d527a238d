"""The public API documents itself: every public class and function of kseg.models, kseg.evaluation,
kseg.export and kseg.training has an ``Example:`` in its docstring and type hints on its signature, and no
docstring in kseg cites a document outside the repository."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

PACKAGES = ("kseg.models", "kseg.evaluation", "kseg.export", "kseg.training")
KSEG = Path(__file__).resolve().parents[1] / "kseg"


def public_api():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{package}.{name}", obj


@pytest.mark.parametrize("name, obj", list(public_api()), ids=lambda value: value if isinstance(value, str) else "")
def test_public_objects_have_an_example_and_type_hints(name, obj):
    assert "Example:" in (inspect.getdoc(obj) or ""), f"{name} has no Example: in its docstring"
    target = obj.__init__ if inspect.isclass(obj) else obj
    if target is object.__init__ or not inspect.isfunction(target):
        return  # a dataclass's generated or an inherited __init__: the fields carry the types
    signature = inspect.signature(target)
    plain = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    missing = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.kind not in plain and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: no type hints on {missing}"
    if inspect.isfunction(obj):
        assert signature.return_annotation is not inspect.Signature.empty, f"{name} has no return annotation"


def test_docstrings_cite_only_what_the_repository_or_gluoncv_holds():
    cited = []
    for path in sorted(KSEG.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"facts §|gluoncv-facts|DESIGN\.md|anchors\.md|maskrcnn-training\.md|shared/reference", line):
                cited.append(f"{path.relative_to(KSEG.parent)}:{number}: {line.strip()}")
    assert not cited, "\n".join(cited)
