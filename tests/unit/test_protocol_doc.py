"""The code's protocol citations point into docs/protocol.md, which is in the repository.

Every ``docs/protocol.md, <section>`` in ``src/`` and ``docs/`` names sections the page
has, and no new citation of the external specification ("SPEC §…") appears.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "protocol.md"



def sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "docs").glob("*.md")])


def section_names() -> set[str]:
    text = PAGE.read_text()
    names = set(re.findall(r"^## (.+)$", text, flags=re.MULTILINE))
    names |= {f"Event sequences: {name}" for name in re.findall(r"^\*\*(.+?)\.\*\*", text, flags=re.MULTILINE)}
    return names


def test_no_file_cites_the_external_specification() -> None:
    citing = [str(path.relative_to(ROOT)) for path in sources() if "SPEC §" in path.read_text()]
    assert citing == []


def test_every_citation_names_sections_the_page_has() -> None:
    names = sorted(section_names(), key=len, reverse=True)
    assert {"Errors", "Event sequences: Barge-in", "Preview dialect"} <= set(names)
    cited = 0
    for path in sources():
        if path == PAGE:
            continue
        text = re.sub(r"\n\s*(?:#\s*)?", " ", path.read_text())  # join wrapped lines and comments
        for match in re.finditer(r"docs/protocol\.md,\s*([^)]+)\)", text):
            rest = match.group(1)
            for name in names:
                rest = rest.replace(name, "")
            rest = re.sub(r"docs/[\w-]+\.md|\band\b|\bto\b|[,;\s]", "", rest)
            assert rest == "", f"{path.relative_to(ROOT)}: {match.group(0)!r} names no section of docs/protocol.md"
            cited += 1
    assert cited >= 40
