"""The repository explains itself: no file points outside it (a fresh clone has nothing
there), and every relative link of the README and docs/ resolves to a file of the repository
— and, for a link with a `#fragment` into a Markdown file, to one of its headings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "node_modules", "dist", ".run", ".mypy_cache", ".pytest_cache",
             ".ruff_cache", "bessmon.egg-info"}
SUFFIXES = {".md", ".py", ".ts"}
# Written in pieces so that this file does not match itself.
OUTSIDE = [
    re.compile(re.escape(".." + "/shared")),
    re.compile(re.escape("/work" + "/shared")),
    re.compile(r"\b" + "DESIGN" + r"\.md\b"),
    re.compile(re.escape("spec" + "/availability")),
    re.compile(r"\bspec" + r" §"),
]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def repo_files() -> list[Path]:
    """Tracked files and new ones not ignored (git), or a walk of the tree without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
        paths = [ROOT / name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if p.is_file()]
    return sorted(p for p in paths
                  if p.suffix in SUFFIXES and p.is_file()
                  and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts))


def markdown_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in repo_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {pattern.pattern!r}: {line.strip()}"
                      for pattern in OUTSIDE if pattern.search(line)]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", markdown_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for match in LINK.finditer(text):
        target = match[1]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, mailto:, …
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_docs_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("docs/architecture.md", "docs/availability-rules.md"):
        assert f"]({name})" in readme, f"README.md does not link {name}"
