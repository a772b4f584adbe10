"""`ablate studies`: the studies in a store, the most recently updated first."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from service.cli import cli
from service.cli.output import console
from service.settings import get_settings
from service.studies import StudyListing, list_studies, short_ids
from service.text import escape_unsafe, printable

STATE_ORDER = ("succeeded", "running", "queued", "failed", "diverged", "cancelled")


@cli.command()
@click.option("--store", help="The store (default: $ABLATE_STORE).")
@click.option("--json", "as_json", is_flag=True, help="One JSON list, full ids, for scripts.")
def studies(store: str | None, as_json: bool) -> None:
    """List the studies in the store: id, name, runs by state, best variant, last update.

    The id shown is a prefix that every command taking a STUDY accepts."""
    from service.store import open_store

    settings = get_settings()
    opened = open_store(store or settings.store, settings.store_outage_seconds)
    listings = list_studies(opened)
    if as_json:
        click.echo(json.dumps([listing.as_json() for listing in listings], indent=2))
        return
    if not listings:
        console.print(f"no studies in {escape(opened.location())}")
        return
    console.print(studies_table(listings, opened.location()))


def studies_table(listings: list[StudyListing], location: str) -> Table:
    shown = short_ids([listing.study_id for listing in listings])
    table = Table(title=f"{len(listings)} studies in {escape(location)}", title_justify="left")
    table.add_column("study", no_wrap=True)
    table.add_column("name")
    table.add_column("runs")
    table.add_column("best variant (test acc.)")
    table.add_column("updated (UTC)", no_wrap=True)
    for listing in listings:
        table.add_row(
            shown[listing.study_id],
            _text(listing.name),
            _runs(listing),
            _best(listing),
            _when(listing.updated_at),
        )
    return table


def _runs(listing: StudyListing) -> str:
    if listing.error:
        return f"[red]{escape(printable(listing.error, 60))}[/]"
    parts = [f"{listing.states[state]} {state}" for state in STATE_ORDER if listing.states.get(state)]
    return f"{listing.runs}: " + ", ".join(parts) if parts else str(listing.runs)


def _best(listing: StudyListing) -> str:
    if listing.best_variant is None or listing.best_test_accuracy is None:
        return "—"  # no report yet
    return f"{_text(listing.best_variant)} ({listing.best_test_accuracy * 100:.1f}%)"


def _text(value: str, limit: int = 40) -> str:
    """A name from a stored document, as a table cell may show it (the full one is in --json)."""
    text = escape_unsafe(value)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _when(stamp: str | None) -> str:
    # ISO 8601 in UTC (service.lifecycle.documents.utcnow): date and minutes are enough to order
    # by eye.
    return stamp[:16].replace("T", " ") if stamp else "—"
