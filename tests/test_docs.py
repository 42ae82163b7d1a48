"""The project stands on its own: no document or comment sends its reader to a file outside the project."""

import io
import re
import subprocess
import tokenize

from .helpers import REPO

OUTSIDE = re.compile(r"(?<![\w.])\.\./[\w.\-/]+")  # a relative path that climbs: ../shared/design/...
DESIGN_NOTES = re.compile(r"\b(ARCHITECTURE|ALGORITHMS|CONVENTIONS|USERS)\.md\b")  # the founders' notes, not shipped


def _tracked(*suffixes: str) -> list:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in listed.splitlines() if name.endswith(suffixes)]


def _prose(path) -> str:
    """What a reader reads: a document whole; of Python, its comments and docstrings (not its test values)."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return text
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return "\n".join(t.string for t in tokens if t.type == tokenize.COMMENT
                     or (t.type == tokenize.STRING and t.string.lstrip("rbuf").startswith(('"""', "'''"))))


def test_no_document_points_outside_the_project():
    found = []
    for path in _tracked(".md", ".py", ".yaml", ".toml", ".txt"):
        text = _prose(path)
        for match in OUTSIDE.finditer(text):
            target = (path.parent / match.group()).resolve()
            if not target.is_relative_to(REPO):
                found.append(f"{path.relative_to(REPO)}: {match.group()}")
        for match in DESIGN_NOTES.finditer(text):
            if not list(REPO.rglob(match.group())):
                found.append(f"{path.relative_to(REPO)}: {match.group()}")
    assert found == []


def test_every_docs_path_the_readme_names_exists():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"docs/[\w\-]+\.md", readme))
    assert named and all((REPO / name).is_file() for name in named), named
