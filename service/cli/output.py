"""Consoles of the CLI. Piped output (logs, CI, tests) is not squeezed into 80 columns."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160, soft_wrap=True)
