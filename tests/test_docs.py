"""The documentation, checked: every relative link and every repository path written in backticks
in README.md, ARCHITECTURE.md and docs/*.md exists; every `docs/method.md, section N` that a file
cites is a section of that page; README.md stays within 250 lines, so a newcomer reads it in five
minutes (the rest belongs in docs/); and no file of the repository refers to a path outside it,
except the real test data beside the checkout (`../shared/realdata`), read by the tests (through
the `realdata` fixture) and by benches that say so.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# The top-level folders whose paths the docs name in backticks.
PATH_ROOTS = ("mmfc", "pipelines", "bench", "docs", "tests")
# A path inside backticks: one of the roots, then a path without placeholders. A token that
# follows a word character, dot or slash is part of something else (a URL, runs/x/mmfc/...).
CODE_PATH = re.compile(rf"(?<![\w./~-])((?:{'|'.join(PATH_ROOTS)})/[\w./-]*)")
# What follows a path written as a pattern rather than a file: mmfc/<stage>/stage.py, train/*.pt.
PLACEHOLDER = "<{*[$"
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
METHOD_CITATION = re.compile(r"docs/method\.md,? section (\d+)")
METHOD_SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)

# Paths outside the repository. The sibling folder of the real test data, allowed where tests
# and benches read it; and the absolute paths of one machine, allowed nowhere.
SIBLING_DATA = re.compile(r"\.\./shared\b|[\"']shared[\"']\s*/\s*[\"']realdata")
SIBLING_DATA_READERS = ("tests/", "bench/")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|Users)/\w")


def code_and_prose(markdown: str) -> list[tuple[int, list[str], str]]:
    """Per line: its number, the code written on it (the whole line inside a fenced block, else
    each backtick span) and the prose around the spans."""
    lines = []
    fenced = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            lines.append((number, [line], ""))
        else:
            lines.append((number, [m.group(2) for m in CODE_SPAN.finditer(line)], CODE_SPAN.sub("", line)))
    return lines


def code_paths(code: str) -> list[str]:
    """The repository paths written in a piece of code, less those written as patterns."""
    found = []
    for match in CODE_PATH.finditer(code):
        following = code[match.end() : match.end() + 1]
        if following and following in PLACEHOLDER:
            continue
        found.append(match.group(1).rstrip("."))
    return found


def relative_links(prose: str) -> list[str]:
    """The targets of the Markdown links in prose that point into the repository, anchors cut."""
    targets = []
    for match in LINK.finditer(prose):
        target = match.group(1)
        if target.startswith("#") or EXTERNAL.match(target):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def dead_references(doc: Path, root: Path) -> list[str]:
    """Every link in `doc` to a file that is not there, relative to the page, and every path in
    its backticks that is not in the repository at `root`; one message each."""
    name = doc.relative_to(root)
    dead = []
    for number, code, prose in code_and_prose(doc.read_text(encoding="utf-8")):
        for link in relative_links(prose):
            if not (doc.parent / link).exists():
                dead.append(f"{name}:{number}: link to {link}, which does not exist")
        for piece in code:
            for path in code_paths(piece):
                target = root / path
                if not (target.is_dir() if path.endswith("/") else target.exists()):
                    dead.append(f"{name}:{number}: `{path}` does not exist")
    return dead


def length_problem(doc: Path, limit: int = README_MAX_LINES) -> str | None:
    """Why `doc` is too long to read in five minutes, or None."""
    count = len(doc.read_text(encoding="utf-8").splitlines())
    return f"{doc.name} has {count} lines, over the {limit} it may have" if count > limit else None


def outside_references(root: Path, files: list[str]) -> list[str]:
    """Lines of the text files `files` (relative to `root`) that name a path outside the
    repository: a machine's absolute path anywhere, the real test data's sibling folder outside
    the tests and benches."""
    found = []
    for name in files:
        try:
            text = (root / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary files, submodules, files deleted but not yet staged
        reads_data = name.startswith(SIBLING_DATA_READERS)
        for number, line in enumerate(text.splitlines(), start=1):
            if MACHINE_PATH.search(line) or (not reads_data and SIBLING_DATA.search(line)):
                found.append(f"{name}:{number}: {line.strip()[:100]}")
    return found


def repository_files(root: Path) -> list[str]:
    """The files git tracks or would add (not those it ignores: runs, data, .venv)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which files belong to the repository is unknown")
    return [name for name in listed.stdout.decode().split("\0") if name]


def documentation(root: Path) -> list[Path]:
    return [root / "README.md", root / "ARCHITECTURE.md", *sorted((root / "docs").glob("*.md"))]


# ---------------------------------------------------------------------------------------------
# The live files


def test_every_link_and_path_in_the_docs_exists():
    dead = [message for doc in documentation(REPO) for message in dead_references(doc, REPO)]
    assert not dead, "\n".join(dead)


def test_every_citation_of_the_method_page_names_one_of_its_sections():
    sections = set(METHOD_SECTION.findall((REPO / "docs" / "method.md").read_text(encoding="utf-8")))
    cited = []
    for name in repository_files(REPO):
        path = REPO / name
        if path.suffix in {".py", ".toml", ".md"} and path.is_file():
            cited += [(name, n) for n in METHOD_CITATION.findall(path.read_text(encoding="utf-8"))]
    assert cited, "no file cites docs/method.md by section"
    missing = [f"{name}: section {n}" for name, n in cited if n not in sections]
    assert not missing, f"docs/method.md has sections {sorted(sections)}; cited but absent: {missing}"


def test_readme_stays_short():
    assert length_problem(REPO / "README.md") is None


def test_license_and_citation_agree_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"]["text"] == "Apache-2.0"
    assert "Apache License\n                           Version 2.0" in (REPO / "LICENSE").read_text(encoding="utf-8")
    # CITATION.cff's top-level keys, read without a YAML parser: cffconvert validated the file.
    citation = dict(re.findall(r"^([a-z-]+):[ \t]*(.*)$", (REPO / "CITATION.cff").read_text(encoding="utf-8"),
                               re.MULTILINE))
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
    assert citation["version"] == project["version"]
    assert citation["license"] == project["license"]["text"]


def test_nothing_in_the_repository_refers_to_a_path_outside_it():
    # This file's own examples name such paths on purpose.
    files = [name for name in repository_files(REPO) if REPO / name != Path(__file__).resolve()]
    found = outside_references(REPO, files)
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------------
# The checks themselves, on constructed files


def test_a_dead_link_or_path_is_found_and_a_live_one_passes(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "mmfc").mkdir()
    (tmp_path / "mmfc" / "atomic.py").write_text("")
    (tmp_path / "docs" / "method.md").write_text("# Method\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "See [the method](docs/method.md#1-crops) and [the data](docs/data.md).\n"
        "Writes go through `mmfc/atomic.py`; locks through `mmfc/lock.py: hold`.\n"
        "```\n.venv/bin/python bench/bench_crops.py\n```\n"
    )
    assert dead_references(doc, tmp_path) == [
        "README.md:1: link to docs/data.md, which does not exist",
        "README.md:2: `mmfc/lock.py` does not exist",
        "README.md:4: `bench/bench_crops.py` does not exist",
    ]


def test_links_of_a_page_in_docs_resolve_from_that_page(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "ARCHITECTURE.md").write_text("")
    page = tmp_path / "docs" / "method.md"
    page.write_text("[the map](../ARCHITECTURE.md), [self](method.md), [missing](ARCHITECTURE.md)\n")
    assert dead_references(page, tmp_path) == ["docs/method.md:1: link to ARCHITECTURE.md, which does not exist"]


def test_patterns_urls_and_commands_are_not_taken_for_paths():
    assert code_paths("mmfc/<stage>/stage.py") == []
    assert code_paths("train/*.pt, mmfc/*.py") == []
    assert code_paths("github.com/x/mmfc/blob/main/mmfc/cli.py") == []
    assert code_paths("python -m mmfc stage crops --out runs/mmfc/x") == []
    assert code_paths("make crops PIPELINE=pipelines/ntu60-xsub.toml") == ["pipelines/ntu60-xsub.toml"]
    assert code_paths("tests/") == ["tests/"]
    assert relative_links("[site](https://example.org/a.md) [top](#set-up) [mail](mailto:a@b.c)") == []


def test_a_readme_of_251_lines_is_too_long_and_one_of_250_is_not(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("line\n" * 251)
    assert length_problem(readme) == "README.md has 251 lines, over the 250 it may have"
    readme.write_text("line\n" * 250)
    assert length_problem(readme) is None


def test_outside_paths_are_found_except_the_real_data_where_tests_and_benches_read_it(tmp_path: Path):
    files = {
        "mmfc/config.py": "# the method is in ../shared/METHOD.md\n",
        "pipelines/x.toml": 'root = "/work/main/data"\n',
        "tests/conftest.py": 'REALDATA = Path(__file__).parents[2] / "shared" / "realdata"  # ../shared\n',
        "bench/bench_x.py": "python bench/bench_x.py /home/me/runs/synth\n",
        "README.md": "Install into /usr/local, write to /tmp/export; data in ~/data and /data/ntu.\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert outside_references(tmp_path, list(files)) == [
        "mmfc/config.py:1: # the method is in ../shared/METHOD.md",
        'pipelines/x.toml:1: root = "/work/main/data"',
        "bench/bench_x.py:1: python bench/bench_x.py /home/me/runs/synth",
    ]
