"""Headless Chromium as the figures' reader: a broken page must read broken, a blank one blank."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from zarr_dask_utils.testing.browser import (
    BrowserUnavailableError,
    chromium_or_skip,
    nonblank_fraction,
    render_html,
)

GOOD = """<!doctype html><html><body style="margin:0;background:#fff">
<canvas id="c" width="600" height="400"></canvas>
<script>
window.addEventListener("load", () => setTimeout(() => {
  const ctx = document.getElementById("c").getContext("2d");
  ctx.fillStyle = "#1f77b4"; ctx.fillRect(20, 20, 400, 300);
  console.log("drawn");
}, 300));
</script></body></html>"""

BROKEN = """<!doctype html><html><body>
<p>some text</p>
<script>
window.addEventListener("load", () => setTimeout(() => { undefinedFunction(); }, 100));
console.error("explicit console error");
</script></body></html>"""

BLANK = "<!doctype html><html><body style='background:#fff'></body></html>"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


def _page(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / name
    path.write_text(html)
    return path


@pytest.mark.slow  # starts Chromium
def test_good_page_draws_and_has_no_errors(tmp_path: Path, chromium: str) -> None:
    result = render_html(_page(tmp_path, "good.html", GOOD), wait_s=1.0, executable=chromium)
    assert result.console_errors == ()
    # the drawn rectangle is 400x300 CSS px of a 1280x900 window: about 10 %
    assert 0.05 < result.nonblank_fraction < 0.2
    assert result.ok
    assert result.screenshot.startswith(b"\x89PNG")


@pytest.mark.slow  # starts Chromium
def test_js_error_and_console_error_are_caught(tmp_path: Path, chromium: str) -> None:
    result = render_html(_page(tmp_path, "broken.html", BROKEN), wait_s=1.0, executable=chromium)
    joined = "\n".join(result.console_errors)
    assert "undefinedFunction" in joined  # thrown after load: the wait must catch it
    assert "explicit console error" in joined
    assert not result.ok


@pytest.mark.slow  # starts Chromium
def test_blank_page_reads_blank(tmp_path: Path, chromium: str) -> None:
    result = render_html(_page(tmp_path, "blank.html", BLANK), wait_s=0.2, executable=chromium)
    assert result.nonblank_fraction == 0.0
    assert result.console_errors == ()
    assert not result.ok


@pytest.mark.slow  # starts Chromium
def test_missing_resource_is_an_error(tmp_path: Path, chromium: str) -> None:
    html = "<html><body><p>x</p><script src='nowhere.js'></script></body></html>"
    result = render_html(_page(tmp_path, "missing.html", html), wait_s=0.2, executable=chromium)
    assert any("nowhere.js" in e for e in result.console_errors)


def test_missing_file_and_missing_browser(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No HTML file"):
        render_html(tmp_path / "absent.html")
    page = _page(tmp_path, "p.html", BLANK)
    with pytest.raises(BrowserUnavailableError):
        render_html(page, executable=str(tmp_path / "no-chromium"))


def test_nonblank_fraction_counts_pixels() -> None:
    from PIL import Image

    image = Image.new("RGB", (10, 10), "white")
    for x in range(5):
        image.putpixel((x, 0), (0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    fraction, width, height = nonblank_fraction(buffer.getvalue())
    assert (fraction, width, height) == (0.05, 10, 10)
