"""index.html: the whole report in one self-contained page.

The page is read straight from a bucket (often through a presigned URL), so it fetches nothing:
the CSS is inline, the plots are `data:` URIs, there is no script, and a Content-Security-Policy
forbids anything else. Every string from the summary is escaped; variant names come from users.
"""

from __future__ import annotations

import base64
import struct
from html import escape

from service.report.cards import Item, Section
from service.report.formatting import (
    INTERVAL_OF,
    PLOT_CAPTIONS,
    VARIANT_COLUMNS,
    partial_message,
    plot_names,
    variant_rows,
)
from service.report.labels import legend
from service.report.models import Summary
from service.report.sections import sections

PAIR_MAX_WIDTH = 900
"""Confusion matrices up to this many pixels wide are shown side by side."""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --bg: #f6f7f9; --hurts: #c0392b;
  --helps: #1e8449; --amber: #c77c02; --base: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 34px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 0 0 6px; }
.meta { color: var(--muted); margin: 0; font-size: 14px; }
.meta code { background: #e9ecf1; padding: 1px 5px; border-radius: 4px; }
.banner { background: #fff4d6; border: 1px solid #f0c36d; border-left: 6px solid var(--amber);
  padding: 12px 16px; border-radius: 6px; margin-bottom: 16px; font-weight: 600; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0 0; padding: 0; list-style: none; }
.counts li { background: #fff; border: 1px solid var(--line); border-radius: 999px;
  padding: 2px 12px; font-size: 13px; }
.cards { display: grid; gap: 14px; }
.card { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--muted);
  border-radius: 8px; padding: 14px 18px; }
.card.hurts { border-left-color: var(--hurts); }
.card.helps { border-left-color: var(--helps); }
.card.data, .card.symptom { border-left-color: var(--amber); }
.card.fix { border-left-color: var(--helps); }
.card .rank { color: var(--muted); font-weight: 400; }
.kind { display: inline-block; font-size: 11px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; padding: 1px 8px; border-radius: 4px; margin-left: 8px; vertical-align: 2px;
  color: #fff; background: var(--muted); }
.kind.hurts { background: var(--hurts); } .kind.helps { background: var(--helps); }
.kind.data, .kind.symptom { background: var(--amber); } .kind.fix { background: var(--helps); }
.intro { font-size: 16px; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
  overflow-x: auto; white-space: pre-wrap; word-break: break-word; font-size: 13px; }
.caption { margin: 6px 0 2px; font-size: 13px; color: var(--muted); }
.card p { margin: 4px 0 10px; }
table { border-collapse: collapse; background: #fff; }
.scroll-x { overflow-x: auto; }
.evidence { font-size: 13px; margin-top: 4px; }
.evidence { max-width: 100%; }
.evidence th, .evidence td { border: 1px solid var(--line); padding: 3px 10px; text-align: left;
  vertical-align: top; overflow-wrap: break-word; }
.evidence th { background: var(--bg); font-weight: 600; min-width: 9em; }
.card h3, .card p, .intro, li, figcaption { overflow-wrap: break-word; }
.labels { font-size: 13.5px; }
.labels td { padding: 3px 10px; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
.labels td:first-child { font-weight: 700; white-space: nowrap; }
details { margin-top: 8px; font-size: 13px; color: var(--muted); }
details code { word-break: break-all; }
#variants .scroll-x { border: 1px solid var(--line); border-radius: 8px; }
.variants { width: 100%; font-size: 13.5px; }
.variants th, .variants td { padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
.variants tbody tr:last-child td { border-bottom: 0; }
.variants th { background: #eef1f5; text-align: left; font-weight: 600; }
.variants th.num { text-align: right; }
.variants td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.variants td.name { min-width: 170px; font-weight: 600; overflow-wrap: anywhere; }
.variants .ci, .variants .factor { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
.variants tr.baseline td { background: #eef4fc; }
.variants tr.baseline td.name { color: var(--base); }
.variants tr.hurts td.delta { color: var(--hurts); font-weight: 700; }
.variants tr.helps td.delta { color: var(--helps); font-weight: 700; }
.variants td.notes { color: var(--muted); min-width: 150px; }
.legend { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
ul.plain { padding-left: 20px; } ul.plain li { margin: 6px 0; }
figure { margin: 0 0 24px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 20px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 8px; }
figcaption strong { color: var(--ink); }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""


def render_html(summary: Summary, plots: dict[str, bytes]) -> str:
    """The report page; `plots` are the PNGs of `render_plots`, embedded as data URIs."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Ablation report: {escape(summary.name)}</title>",
        f"<style>{STYLE}</style></head><body><main>",
    ]
    if summary.partial:
        parts.append(f'<div class="banner" role="alert">{escape(partial_message(summary))}</div>')
    parts += _header(summary)
    for section in sections(summary):
        parts += _section(section)
    parts += _variants(summary) + _legend(summary)
    parts += _plots(summary, plots) + _notes(summary)
    parts.append(
        f"<footer>summary.json (schema version {summary.schema_version}), report.md, runs.csv and "
        "plots/ lie next to this file.</footer></main></body></html>"
    )
    return "\n".join(parts) + "\n"


def _header(summary: Summary) -> list[str]:
    counts = "".join(f"<li>{n} {escape(state)}</li>" for state, n in sorted(summary.counts.items()))
    return [
        f"<header><h1>Ablation report: {escape(summary.name)}</h1>",
        f'<p class="meta">Study <code>{escape(summary.study_id)}</code> · generated '
        f"{escape(summary.generated_at or '–')} · baseline <strong>{escape(summary.baseline)}</strong> · "
        f"{escape(summary.metric)}, alpha {summary.alpha:g}</p>",
        f'<ul class="counts" aria-label="runs per state">{counts}</ul></header>',
    ]


def _section(section: Section) -> list[str]:
    parts = [f'<section id="{escape(section.id)}"><h2>{escape(section.title)}</h2>']
    if section.intro:
        parts.append(f'<p class="intro">{escape(section.intro)}</p>')
    if not section.items and section.empty:
        parts.append(f"<p>{escape(section.empty)}</p>")
    if section.items:
        parts.append('<div class="cards">')
        for rank, item in enumerate(section.items, 1):
            parts.append(_card(rank if section.ordered else None, item))
        parts.append("</div>")
    return parts + ["</section>"]


def _card(rank: int | None, item: Item) -> str:
    badge = escape(item.badge)
    head = f'<span class="rank">{rank}.</span> ' if rank else ""
    tag = f'<span class="kind {badge}">{badge}</span>' if badge else ""
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in item.rows
    )
    evidence = f'<table class="evidence">{rows}</table>' if rows else ""
    code = "".join(
        (f'<p class="caption">{escape(caption)}</p>' if caption else "")
        + f"<pre><code>{escape(text)}</code></pre>"
        for caption, text in item.code
        if text
    )
    return (
        f'<article class="card {badge}"><h3>{head}{escape(item.title)}{tag}</h3>'
        f"{f'<p>{escape(item.text)}</p>' if item.text else ''}{code}{evidence}</article>"
    )


NUMERIC = {"seeds", "test_accuracy", "delta", "p", "g", "gap", "best_epoch"}


def _variants(summary: Summary) -> list[str]:
    head = "".join(
        f'<th scope="col"{" class=num" if key in NUMERIC else ""}>{escape(title)}</th>'
        for key, title in VARIANT_COLUMNS
    )
    body = []
    for row in variant_rows(summary):
        classes = " ".join(c for c in ("baseline" if row.is_baseline else "", row.tone) if c)
        cells = []
        for key, _ in VARIANT_COLUMNS:
            value = escape(getattr(row, key))
            if key in INTERVAL_OF and getattr(row, INTERVAL_OF[key]) != "–":
                value += f'<span class="ci">{escape(getattr(row, INTERVAL_OF[key]))}</span>'
            if key == "name" and row.full_name != row.name:
                value += f'<span class="factor">{escape(row.full_name)}</span>'
            elif key == "name" and row.factor:
                value += f'<span class="factor">{escape(row.factor)}</span>'
            cells.append(f'<td class="{"num " if key in NUMERIC else ""}{key}">{value}</td>')
        body.append(f'<tr class="{classes}">{"".join(cells)}</tr>')
    return [
        '<section id="variants"><h2>Variants</h2><div class="scroll-x"><table class="variants">',
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>",
        '<p class="legend">Test accuracy: mean ± std across seeds (%), its 95% interval below. Δ in '
        "percentage points against the baseline, with Welch's 95% interval; p is Welch's, "
        "adjusted with Benjamini-Hochberg over the study's comparisons (significance is judged "
        "on it); g is Hedges' g. Seeds: succeeded of planned.</p></section>",
    ]


def _legend(summary: Summary) -> list[str]:
    """The full name behind each short label the plots and tables show."""
    rows = "".join(
        f"<tr><td>{escape(short)}</td><td>{escape(name)}</td></tr>"
        for short, name in legend(summary)
    )
    if not rows:
        return []
    return [
        '<section id="labels"><h2>Variant labels</h2><p class="legend">Names too long for a '
        "plot's axis are shown as these labels.</p>"
        f'<table class="labels"><tbody>{rows}</tbody></table></section>'
    ]


def _plots(summary: Summary, plots: dict[str, bytes]) -> list[str]:
    names = [name for name in plot_names(summary) if name in plots]
    confusion = [name for name in names if name.startswith("confusion_")]
    parts = ['<section id="plots"><h2>Plots</h2>']
    parts += [_figure(name, plots[name]) for name in names if name not in confusion]
    # Two small matrices side by side, to compare them; large ones (many classes) one per row.
    small = all((_png_size(plots[name]) or (0, 0))[0] <= PAIR_MAX_WIDTH for name in confusion)
    figures = "".join(_figure(name, plots[name]) for name in confusion)
    parts.append(f'<div class="pair">{figures}</div>' if small and len(confusion) == 2 else figures)
    return parts + ["</section>"]


def _figure(name: str, png: bytes) -> str:
    title, caption = PLOT_CAPTIONS[name]
    size = _png_size(png)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{escape(name[:-4])}"><img src="data:image/png;base64,{data}" alt="{escape(title)}"{dims}>'
        f"<figcaption><strong>{escape(title)}.</strong> {escape(caption)}</figcaption></figure>"
    )


def _png_size(png: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, so the page does not reflow as images decode."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", png[16:24])


def _notes(summary: Summary) -> list[str]:
    if not summary.notes:
        return []
    items = "".join(f"<li>{escape(note)}</li>" for note in summary.notes)
    return [f'<section id="notes"><h2>Notes</h2><ul class="plain">{items}</ul></section>']
