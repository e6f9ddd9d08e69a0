"""Every reference to a documentation file (``*.md``) in the repository's tracked text files resolves to a file
in the repository: no docstring, comment or doc points outside it."""
import re
import subprocess
from pathlib import Path

from utils.config import REPO_ROOT

TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".txt", ".toml", ".cfg", ".ini", ""}
MD_TOKEN = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b")
PLACEHOLDERS = {"FILE.md"}  # validate.py's --out metavar, not a file


def tracked_text_files() -> list[Path]:
    """The repository's tracked files with a text suffix (git ls-files; a plain walk where git is missing)."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                               timeout=60).stdout.splitlines()
        paths = [REPO_ROOT / name for name in names]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "data", "results"}
        paths = [p for p in REPO_ROOT.rglob("*") if not skip & set(p.relative_to(REPO_ROOT).parts)]
    return [p for p in paths if p.is_file() and not p.name.startswith(".")
            and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")]


def is_doc_reference(token: str) -> bool:
    """A documentation file (an upper-case name such as README.md, or anything under docs/), not a file name
    the code writes (test_results.md, comparison.md, ...)."""
    name = token.rsplit("/", 1)[-1][:-3]
    if token in PLACEHOLDERS:
        return False
    return token.startswith("docs/") or "/docs/" in token or re.fullmatch(r"[A-Z][A-Z0-9_-]*", name) is not None


def dangling_references(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    found = []
    for token in sorted(set(MD_TOKEN.findall(text))):
        token = token.lstrip("./") if token.startswith("./") else token
        if is_doc_reference(token) and not any((base / token).is_file() for base in (REPO_ROOT, path.parent)):
            found.append(f"{path.relative_to(REPO_ROOT)}: {token}")
    return found


def test_every_doc_reference_resolves_inside_the_repository():
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files)
    dangling = [ref for path in files for ref in dangling_references(path)]
    assert not dangling, "references to .md files that are not in the repository:\n" + "\n".join(dangling)


def test_the_check_catches_references_outside():
    outside = [name + ".md" for name in ("DATA_FORMATS", "docs/absent")]  # built here: this file must not hold them
    stray = REPO_ROOT / "docs" / "_probe_for_test.py"
    try:
        stray.write_text(f'"""See {outside[0]}, {outside[1]}, docs/model.md and test_results.md."""\n')
        assert dangling_references(stray) == [f"docs/_probe_for_test.py: {name}" for name in sorted(outside)]
    finally:
        stray.unlink()
