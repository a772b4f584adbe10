"""Moved into the report: the terminal's results table is
`service.report.terminal.results_table(store, study_document)`, computed by the report's own
statistics (`service.report.summary.variant_summaries`), so the table and the report agree.

These two names remain only until `service/cli/cluster.py` calls `results_table` directly;
then this module is deleted.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from service.report.terminal import results_table
from service.store.base import Store


def summarize_document(document: Any, store: Store) -> Table | Group:
    """The study's results table (see `service.report.terminal.results_table`)."""
    return results_table(store, document)


def summary_table(table: Table | Group, title: str) -> Table | Group:
    """The table `summarize_document` built; it already carries the study in its title."""
    return table
