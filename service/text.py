"""Text that is safe to print: control characters escaped, bidi overrides made visible, length cut.

A value from a spec, a dataset file or a queue message may hold ESC sequences (which clear or
rewrite the user's terminal), bidi overrides (which reorder what the user reads) or a megabyte
of text. Every such value is passed through `printable` before it reaches a message, a log line
or a table: it comes back as its `repr`-like form, at most `limit` characters.
"""

from __future__ import annotations

import re
from typing import Any

LIMIT = 120
"""Characters of an echoed value shown in a message; the rest is summarised as its length."""

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text:
# bidi embeddings, overrides and isolates, zero-width marks, the BOM, line/paragraph separators.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


def has_unsafe(text: str) -> bool:
    """Whether `text` holds a character that `printable` would escape."""
    return UNSAFE.search(text) is not None


def escape_unsafe(text: str) -> str:
    """`text` with each unsafe character written as its escape (`\\x1b`, `\\u202e`)."""
    return UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def cut(text: str, limit: int = LIMIT) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def printable(value: Any, limit: int = LIMIT) -> str:
    """A value to echo in a message: `repr` (which escapes control, bidi and zero-width
    characters in strings), with any unsafe character it left escaped, cut to `limit`."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails: its type is enough to say what it was
        text = f"<{type(value).__name__}>"
    return cut(escape_unsafe(text), limit + 2)
