"""What every figure of the report shares: colours, resolution, and text that never clips."""

from __future__ import annotations

import textwrap

DPI = 110
BASELINE = "#1f5fa8"
HURTS = "#c0392b"
HELPS = "#1e8449"
NEUTRAL = "#6b6b6b"
TRAIN = "#1f5fa8"
VALIDATION = "#e07b00"
TEST = "#6a3d9a"


def cut_text(name: str, width: int = 38) -> str:
    """A user's name shortened to `width`, with `$` escaped so matplotlib draws it as text."""
    name = name if len(name) <= width else name[: width - 1] + "…"
    return name.replace("$", r"\$")


def wrap_title(text: str, width: int) -> str:
    """A title wrapped to lines of `width` characters, so a long one is never clipped."""
    return "\n".join(textwrap.wrap(text.replace("$", r"\$"), width)) or " "
