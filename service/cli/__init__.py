"""The `ablate` command line. Local mode: run, validate, schema. Distributed mode: submit,
status, cancel, results, pull, worker."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError
from rich.markup import escape

from service.cli.output import errors
from service.errors import AblateError
from service.logs import configure_logging
from service.settings import get_settings


class AblateGroup(click.Group):
    """Shows an `AblateError` as one clear message and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AblateError as exc:
            errors.print(f"[bold red]error:[/] {escape(terminal_safe(str(exc)))}", highlight=False)
            sys.exit(exc.exit_code)


@click.group(cls=AblateGroup)
@click.version_option(package_name="ablate")
def cli() -> None:
    """Find what causes a Keras CNN's low accuracy with ablation studies."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ABLATE_{'_'.join(map(str, e['loc'])).upper() or 'SETTINGS'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise AblateError(f"invalid settings: {problems}") from None
    # The CLI's own output is the progress bar and tables; its logs are warnings and worse.
    level = settings.log_level if settings.log_level != "info" else "warning"
    configure_logging(level, settings.log_format)


def terminal_safe(message: str) -> str:
    """A message fit for the terminal: control and bidi characters escaped on each line, URLs
    redacted, and at most 50 lines of at most 2000 characters (values are cut where they are
    echoed; this is the last guard)."""
    from service.logs import redact_urls
    from service.text import cut, escape_unsafe

    lines = [cut(escape_unsafe(line), 2000) for line in redact_urls(message).split("\n")]
    if len(lines) > 50:
        lines = [*lines[:50], f"  ... and {len(lines) - 50} more lines"]
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="ablate")


from service.cli import cluster, local, studies  # noqa: E402,F401  (registers the commands)
