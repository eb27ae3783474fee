"""The docs a newcomer navigates hold together: every link of the README and of ``docs/`` reaches a
file and, where it names one, a heading of that file; every place in the tree that cites a README
section by name cites one that exists (the README was cut to a front page, its sections moved to
``docs/``, and cross-references in comments had gone stale); the README stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED = re.compile(r"README(?:'s)? \"([^\"]+)\"")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation but ``-`` and ``_`` dropped,
    each space a ``-``."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(page: Path) -> list[str]:
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            lines.append(line.lstrip("#").strip())
    return lines


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto: - outside this repository
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {path})")
        elif anchor and file.suffix == ".md" and anchor not in {slug(h) for h in headings(file)}:
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    return broken


def test_the_slug_is_github_s():
    assert slug("Is the cluster ready? `launcher doctor`, submit's preflight, Kueue, sizing") == \
        "is-the-cluster-ready-launcher-doctor-submits-preflight-kueue-sizing"
    assert slug("Following a run costs O(1) requests") == "following-a-run-costs-o1-requests"


def test_every_link_of_the_readme_and_the_docs_reaches_its_file_and_heading():
    broken = {page.name: found for page in PAGES if (found := broken_links(page))}
    assert not broken, broken


def test_the_link_check_sees_a_missing_heading_and_file(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Here\n\n[ok](#here) [gone](#there) [no](b.md) [web](https://x.org/#y)\n")
    assert broken_links(page) == ["#there (no heading #there in a.md)", "b.md (no file b.md)"]


def test_every_readme_section_cited_in_the_tree_exists():
    sections = set(headings(ROOT / "README.md"))
    stale = []
    for folder in ("landscape_job", "launcher", "examples", "docs", "k8s", "benchmarks", "tests"):
        for file in sorted((ROOT / folder).rglob("*")):
            if file.suffix not in {".py", ".md", ".yaml", ".sh"} or file == Path(__file__):
                continue
            for cited in CITED.findall(file.read_text(encoding="utf-8", errors="replace")):
                if not any(h == cited or h.startswith(cited) for h in sections):
                    stale.append(f"{file.relative_to(ROOT)}: README \"{cited}\"")
    assert not stale, stale


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; its sections belong in docs/"
