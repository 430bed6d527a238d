"""The package's layers point one way: every import of a kseg module stays within the layers below it.

Read from the source (every import, at module level or inside a function), so a new upward arrow fails here.
"""

import ast
from pathlib import Path

KSEG = Path(__file__).resolve().parents[1] / "kseg"

# Each part of kseg and the parts it may import (besides itself). Bottom first.
ALLOWED = {
    "presets": set(),
    "utils": set(),
    "ops": {"presets", "utils"},
    "weights": {"presets", "utils"},
    "losses": set(),
    "metrics": set(),
    "visualize": {"presets", "utils"},
    "data": {"ops", "visualize", "presets", "utils"},  # VOC palette drawings; detection targets in the pipeline
    "models": {"ops", "weights", "presets", "utils"},
    "evaluation": {"models", "ops", "data", "metrics", "visualize", "presets", "utils"},
    "export": {"models", "ops", "data", "presets", "utils"},
    "training": {"models", "evaluation", "export", "data", "losses", "metrics", "ops", "weights", "presets", "utils"},
    "arithmetic": {"ops"},
    "benchmark": {"arithmetic", "models", "ops", "data", "presets", "utils"},
    "cli": {"training", "evaluation", "export", "models", "benchmark", "data", "weights", "visualize", "presets",
            "utils"},
}


def part_of(path):
    relative = path.relative_to(KSEG).parts
    return relative[0].removesuffix(".py") if relative[0] != "__init__.py" else None


def kseg_imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kseg"):
            names = [node.module] if node.module != "kseg" else [f"kseg.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("kseg.")]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[1] != "__version__":
                yield parts[1], node.lineno


def test_every_part_is_in_the_table():
    parts = {part_of(path) for path in KSEG.rglob("*.py")} - {None}
    assert parts == set(ALLOWED)


def test_imports_point_down():
    upward = []
    for path in sorted(KSEG.rglob("*.py")):
        part = part_of(path)
        if part is None:
            continue
        for imported, line in kseg_imports(path):
            if imported != part and imported not in ALLOWED[part]:
                upward.append(f"{path.relative_to(KSEG.parent)}:{line} ({part}) imports kseg.{imported}")
    assert not upward, "\n".join(upward)


def test_no_cycles_between_parts():
    """The table itself is a layering: no part may reach itself through the others."""
    for start in ALLOWED:
        seen, stack = set(), list(ALLOWED[start])
        while stack:
            part = stack.pop()
            assert part != start, f"{start} reaches itself"
            if part not in seen:
                seen.add(part)
                stack.extend(ALLOWED[part])
