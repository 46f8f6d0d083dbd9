"""The import rule of ARCHITECTURE.md, checked on every module of the package.

A module imports only from its own floor or the floors below it, and no module but the CLI
imports a stage runner (`<stage>/stage.py`): a stage reads the stage before it through that
stage's file reader. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmfc"

# Bottom to top, as drawn in ARCHITECTURE.md.
FLOORS = [
    ("mmfc", "mmfc.errors", "mmfc.config", "mmfc.atomic", "mmfc.lock", "mmfc.jobs", "mmfc.metrics", "mmfc.stats",
     "mmfc.cores", "mmfc.timings", "mmfc.stage_frame", "mmfc.folds"),
    ("mmfc.data",),
    ("mmfc.poses",),  # stage 0
    ("mmfc.crops",),  # stage 1
    ("mmfc.models",),
    ("mmfc.train",),  # stage 2's library: datasets, loop, schedule, checkpoint, distributed
    ("mmfc.branches",),
    # stage 2's runner and its loop (which the out-of-fold stage runs too); stage 3; the folds
    ("mmfc.train.stage", "mmfc.train.fit", "mmfc.scores", "mmfc.oof"),
    ("mmfc.fusion",),  # stage 4
    ("mmfc.report", "mmfc.cost"),
    ("mmfc.run_folder", "mmfc.predict"),  # a trained run opened; predicting new clips with it
    ("mmfc.live",),  # a live stream through a trained run, by predict's code
    ("mmfc.export",),  # a trained run as ONNX graphs and a fusion recipe
    ("mmfc.cli", "mmfc.__main__"),
]
RUNNER_USERS = {"mmfc.cli"}


def floor(module: str) -> int:
    """The floor of the longest package prefix of `module` that FLOORS names."""
    best, level = "", None
    for number, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, level = name, number
    assert level is not None, f"{module} has no floor: add it to FLOORS and to ARCHITECTURE.md"
    return level


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every mmfc import in the tree, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmfc":  # from mmfc import atomic
                found += [(node.lineno, f"mmfc.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "mmfc" or name.startswith("mmfc.")]


def problem(source: str, target: str) -> str | None:
    """Why `source` may not import `target`, or None when it may."""
    if floor(target) > floor(source):
        return "a floor above"
    if target.endswith(".stage") and source not in RUNNER_USERS and target != source:
        return "another stage's runner"
    return None


def test_modules_import_only_their_floor_or_below_and_no_stage_runner():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, target in imported(ast.parse(path.read_text(), str(path))):
            reason = problem(source, target)
            if reason:
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}, {reason}")
    assert not broken, "\n".join(broken)


def test_the_rule_catches_what_it_should():
    assert problem("mmfc.scores.stage", "mmfc.train.checkpoint") is None  # the file reader
    assert problem("mmfc.scores.stage", "mmfc.train.stage") == "another stage's runner"
    assert problem("mmfc.report.stage", "mmfc.fusion.stage") == "another stage's runner"
    assert problem("mmfc.models.resnet", "mmfc.train.loop") == "a floor above"
    assert problem("mmfc.branches", "mmfc.train.stage") == "a floor above"
    assert problem("mmfc.cli", "mmfc.crops.stage") is None
    tree = ast.parse("def f():\n    from mmfc.train.stage import run_train\nfrom mmfc import atomic\n")
    assert sorted(imported(tree)) == [(2, "mmfc.train.stage"), (3, "mmfc.atomic")]
