"""The end of every command that finishes a study: write the report, then show its answer."""

from __future__ import annotations

import contextlib
import warnings

from service.cli.output import console


def write_report_with_status(store, study_id: str) -> str:
    """Write the report, print its variants table and its answer, and return where it is."""
    from service.report import publish_report
    from service.report.terminal import answer, variants_table

    with console.status("writing the report"), numerical_warnings_quiet():
        summary, location = publish_report(store, study_id)
    console.print(variants_table(summary))
    console.print(answer(summary))
    return location


@contextlib.contextmanager
def numerical_warnings_quiet():
    """Numerical libraries' warnings (scipy's precision loss on near-identical seeds) are not
    the user's business: the statistics handle those cases themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield
