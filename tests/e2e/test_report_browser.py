"""index.html in a real headless Chromium: it renders, its images load, its console stays clean.

Chromium (Debian's package, installed by `make browser`) is driven over the DevTools protocol on
`--remote-debugging-pipe`: NUL-terminated JSON on file descriptors 3 (to the browser) and 4 (from
it), so the test needs no WebSocket client and no port. A missing Chromium fails the test.
A full-page screenshot is kept in test-artifacts/report.png.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from service.report.plots import render_plots
from service.report.render import render_html
from tests.report_fixtures import long_names_grid, make_study
from tests.report_study_data import XSS

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
]  # fmt: skip


class CDPError(RuntimeError):
    pass


class Browser:
    """A headless Chromium and one page of it, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def connect_pipe():  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.log = log
        self.process = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            preexec_fn=connect_pipe, close_fds=False,
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.page(f"{domain}.enable")
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, **params) -> dict:
        return self.call(method, session=self.session, **params)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(index)
            self.events.append(self._receive(deadline, event))

    def evaluate(self, expression: str):
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _receive(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(
                    f"no answer to {waiting_for}; Chromium's log:\n{self.log_tail()}"
                )
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium closed the pipe; its log:\n{self.log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far (CSP violations too)."""
        errors = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(
                    " ".join(
                        str(arg.get("value", arg.get("description"))) for arg in params["args"]
                    )
                )
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
        return errors

    def screenshot(self, path: Path) -> Path:
        """The whole page, not only the viewport, as a PNG at `path`."""
        size = self.page("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.page(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def open(self, url: str) -> None:
        self.events.clear()
        self.page("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def close(self) -> None:
        with contextlib.suppress(CDPError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Chromium is missing: `make browser` (apt-get install chromium) installs it"
    return binary


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chromium")
    opened = Browser(chromium_binary(), folder / "profile", folder / "chromium.log")
    yield opened
    opened.close()


def test_report_page_renders_with_every_image_loaded_and_a_clean_console(browser, tmp_path):
    summary, data = make_study()
    assert summary.partial
    page = tmp_path / "index.html"
    page.write_text(render_html(summary, render_plots(summary, data)), encoding="utf-8")

    browser.open(page.as_uri())
    screenshot = browser.screenshot(ARTIFACTS / "report.png")  # first, to look at when it fails
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000

    assert browser.evaluate("document.title") == "Ablation report: seed-study"
    text = browser.evaluate("document.body.innerText")
    assert "Partial report" in text.split("\n", 1)[0]
    assert text.index(summary.verdict) < text.index("What is causing low accuracy")
    for item in [*summary.causes, *summary.symptoms, *summary.strengths]:
        assert item.title in text and item.statement in text
    assert summary.inconclusive[0].statement in text
    assert "learning_rate: 0.001" in text  # the fix, as YAML to paste
    assert XSS in text  # shown as text, never run
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    cards = browser.evaluate("[...document.querySelectorAll('.card')].map(c => c.className)")
    kinds = ["card fix", "card symptom", "card symptom", "card hurts"]
    assert cards[: len(kinds)] == kinds

    images = browser.evaluate(
        "[...document.images].map(i => ({complete: i.complete, width: i.naturalWidth, "
        "height: i.naturalHeight, shown: i.getBoundingClientRect().width, alt: i.alt, "
        "data: i.src.startsWith('data:image/png;base64,')}))"
    )
    assert len(images) == 5
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
        assert image["data"] and image["alt"] and image["shown"] > 100, image

    assert browser.console_errors() == []
    assert not [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]


def test_the_console_check_catches_errors_and_broken_images(browser, tmp_path):
    # The control for the test above: the same checks see a script error and a failed image.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><title>broken</title><img src='missing.png'>"
        "<script>console.error('boom'); undefined_function();</script>"
    )
    browser.open(page.as_uri())
    errors = browser.console_errors()
    assert any("boom" in error for error in errors), errors
    assert any("undefined_function" in error for error in errors), errors
    assert any("missing.png" in error for error in errors), errors
    assert browser.evaluate("[...document.images].map(i => i.naturalWidth)") == [0]


OVERFLOWING = """
[...document.querySelectorAll('body *')]
  .filter(el => !el.closest('.scroll-x, pre'))
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
    || (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1))
  .map(el => el.tagName + '.' + el.className + ': ' + (el.textContent || '').slice(0, 60))
"""
"""Elements outside a scroll box that stick out of the page or whose content overflows them."""


@pytest.mark.parametrize("factors", [2, 3])
def test_a_grid_report_with_long_generated_names_fits_1280_pixels(browser, tmp_path, factors):
    summary, data = long_names_grid(factors)
    plots = render_plots(summary, data)
    page = tmp_path / "index.html"
    page.write_text(render_html(summary, plots), encoding="utf-8")
    browser.open(page.as_uri())
    browser.screenshot(ARTIFACTS / f"grid-report-{factors}-factors.png")

    width = browser.evaluate("document.documentElement.clientWidth")
    assert width == 1280
    assert browser.evaluate("document.documentElement.scrollWidth") <= width  # no page scroll
    assert browser.evaluate(OVERFLOWING) == []  # nothing sticks out (and so nothing is cut)

    images = browser.evaluate(
        "[...document.images].map(i => ({complete: i.complete, width: i.naturalWidth, "
        "right: i.getBoundingClientRect().right, alt: i.alt}))"
    )
    assert len(images) == len(plots)
    assert all(i["complete"] and i["width"] > 100 and i["right"] <= width for i in images), images
    grid_plot = "grid_heatmap" if factors == 2 else "factor_importance"
    assert browser.evaluate(f"!!document.querySelector('figure#{grid_plot} img')")

    # Plot labels: every variant has its own short label, and the legend maps each back.
    legend = browser.evaluate(
        "[...document.querySelectorAll('table.labels tr')]"
        ".map(r => [...r.cells].map(c => c.innerText))"
    )
    names = [variant.name for variant in summary.variants[1:]]
    assert [name for _, name in legend] == names
    assert len({short for short, _ in legend}) == len(legend) == len(names)
    assert all(len(short) <= 4 for short, _ in legend)
    shown = browser.evaluate(
        "[...document.querySelectorAll('.variants td.name')].map(td => td.firstChild.textContent)"
    )
    assert len(set(shown)) == len(shown) == len(summary.variants)

    # The grid's analysis is on the page, in points, with no raw JSON in the evidence.
    text = browser.evaluate("document.getElementById('factorial').innerText")
    assert all(factor.factor in text for factor in summary.factorial.factors)
    assert " pts [" in text and "ANOVA p" in text
    evidence = browser.evaluate(
        "[...document.querySelectorAll('table.evidence td')].map(td => td.innerText)"
    )
    assert evidence and not [cell for cell in evidence if cell.lstrip().startswith(("{", "["))]
    assert browser.console_errors() == []
