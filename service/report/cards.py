"""The report's text as both renderers take it (report.md and index.html, `page.py` and
`render.py`): a `Section` of `Item` cards, each with a title, text, a badge, code blocks and
evidence rows. Escaping is the renderer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    title: str
    text: str = ""
    badge: str = ""
    """'fix', 'symptom', 'hurts', 'data' ...: the card's colour."""
    code: list[tuple[str, str]] = field(default_factory=list)
    """(caption, YAML) blocks to paste into a spec."""
    rows: list[tuple[str, str]] = field(default_factory=list)
    """Evidence as (name, value) pairs."""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    items: list[Item] = field(default_factory=list)
    empty: str = ""
    ordered: bool = False
