"""Open an HTML file in headless Chromium, as a person would, and report what went wrong.

Figures are tested by looking at them: :func:`render_html` loads a saved HTML file in headless
Chromium (Debian's ``chromium`` package), waits after the load event through the DevTools
protocol (``--screenshot`` shoots before scripts have drawn anything), collects console errors
and uncaught exceptions, takes a screenshot and measures how much of it is not background.

Tests call :func:`chromium_or_skip` first: it finds Chromium, installs it with ``apt-get`` when
it can, and skips the test with the reason only where it cannot be installed.

Examples
--------
>>> from zarr_dask_utils.testing.browser import render_html
>>> result = render_html("figure.html")  # doctest: +SKIP
>>> result.console_errors, result.nonblank_fraction > 0.01  # doctest: +SKIP
((), True)
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMIUM_FLAGS",
    "BrowserResult",
    "BrowserUnavailableError",
    "chromium_or_skip",
    "find_chromium",
    "install_chromium",
    "nonblank_fraction",
    "render_html",
]

#: Flags for a quiet, offline, throw-away headless Chromium (a fresh ``--user-data-dir`` is added).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
)

_CALL_TIMEOUT = 120.0  # seconds for one DevTools command (a screenshot on a loaded machine)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserUnavailableError(RuntimeError):
    """Chromium is not installed here (or did not start); the message says how to install it."""


@dataclass(frozen=True)
class BrowserResult:
    """What headless Chromium saw when it opened an HTML file.

    Attributes
    ----------
    url
        The ``file://`` URL opened.
    console_errors
        Console messages of level error, uncaught exceptions and failed resource loads, in
        the order they arrived.
    nonblank_fraction
        Fraction of screenshot pixels that differ from the background colour (the most
        common colour): 0.0 for a blank page.
    width, height
        Screenshot size in pixels.
    screenshot
        The PNG bytes of the screenshot.
    """

    url: str
    console_errors: tuple[str, ...]
    nonblank_fraction: float
    width: int
    height: int
    screenshot: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        """No console error and something drawn."""
        return not self.console_errors and self.nonblank_fraction > 0.0

    def save_screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the screenshot PNG to *path* and return it."""
        out = Path(path)
        out.write_bytes(self.screenshot)
        return out


# --- finding and installing Chromium ---------------------------------------------------------


def find_chromium() -> str | None:
    """Path of a Chromium executable (``$ZDU_CHROMIUM`` first), or ``None``."""
    env = os.environ.get("ZDU_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_chromium() -> str:
    """Install Debian's ``chromium`` with ``apt-get`` and return its path.

    Returns
    -------
    str
        The executable.

    Raises
    ------
    BrowserUnavailableError
        ``apt-get`` is missing, this process is not root, or the install failed; the message
        says which.
    """
    found = find_chromium()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise BrowserUnavailableError(
            "Chromium is not installed and this machine has no apt-get to install Debian's "
            "'chromium' package: install Chromium by hand, or set ZDU_CHROMIUM to its path."
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise BrowserUnavailableError(
            "Chromium is not installed and installing it needs root: run "
            "`sudo apt-get install -y chromium` (or `make test`, which does), or set "
            "ZDU_CHROMIUM to a Chromium executable."
        )
    done = subprocess.run(
        [apt, "install", "-y", "-q", "chromium"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = find_chromium()
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BrowserUnavailableError(
            "`apt-get install -y chromium` failed (exit code "
            f"{done.returncode}): {' / '.join(tail)}. Run `apt-get update` first, or install "
            "Chromium by hand and set ZDU_CHROMIUM to its path."
        )
    return found


def chromium_or_skip() -> str:
    """Chromium's path for a test; install it if possible, else skip the test with the reason.

    Returns
    -------
    str
        The Chromium executable.
    """
    import pytest

    try:
        return install_chromium()
    except BrowserUnavailableError as err:
        pytest.skip(f"headless Chromium unavailable: {err}")


# --- the DevTools session --------------------------------------------------------------------


class _DevTools:
    """A minimal synchronous DevTools-protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        try:
            import websocket  # websocket-client, in the test extra
        except ImportError as err:
            raise BrowserUnavailableError(
                "Driving Chromium needs websocket-client: pip install 'zarr-dask-utils[test]' "
                "(or websocket-client)."
            ) from err

        self._ws = websocket.create_connection(ws_url, timeout=_CALL_TIMEOUT, suppress_origin=True)
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events arriving meanwhile are kept)."""
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        self._ws.settimeout(_CALL_TIMEOUT)  # waiting for events may have left a short one
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserUnavailableError(f"DevTools {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> bool:
        """Collect events until *event* arrives (``True``) or *timeout* seconds pass."""
        if any(m["method"] == event for m in self.events):
            return True
        return self._pump(timeout, until=event)

    def pump(self, seconds: float) -> None:
        """Collect events for *seconds*."""
        self._pump(seconds, until=None)

    def _pump(self, seconds: float, until: str | None) -> bool:
        import websocket

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._ws.settimeout(left)
            try:
                message = json.loads(self._ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if "method" in message:
                self.events.append(message)
                if message["method"] == until:
                    return True
        return False

    def close(self) -> None:
        self._ws.close()


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The port Chromium chose for ``--remote-debugging-port=0`` (it writes DevToolsActivePort)."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise BrowserUnavailableError(
                f"Chromium exited with code {proc.returncode} before it was ready: {err[-500:]}"
            )
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        time.sleep(0.05)
    raise BrowserUnavailableError(f"Chromium did not open its DevTools port within {timeout} s.")


def _page_websocket(port: int) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        targets = json.loads(response.read())
    for target in targets:
        if target.get("type") == "page":
            return str(target["webSocketDebuggerUrl"])
    raise BrowserUnavailableError("Chromium started without a page to drive.")


@contextlib.contextmanager
def _chromium(executable: str, width: int, height: int) -> Iterator[_DevTools]:
    with tempfile.TemporaryDirectory(prefix="zdu-chromium-", ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        args = [
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = _devtools_port(profile, proc, timeout=60)
            tools = _DevTools(_page_websocket(port))
            try:
                yield tools
            finally:
                tools.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


# --- what the page did -----------------------------------------------------------------------


def _errors(events: list[dict[str, Any]]) -> tuple[str, ...]:
    found: list[str] = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            text = exc.get("description") or details.get("text", "exception")
            found.append(f"exception: {text.splitlines()[0]}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            values = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            found.append(f"console.{params['type']}: {' '.join(values)}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(
                f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}"
            )
    return tuple(found)


def nonblank_fraction(png: bytes) -> tuple[float, int, int]:
    """Fraction of pixels differing from the most common colour, with the image size.

    Parameters
    ----------
    png
        A PNG image.

    Returns
    -------
    tuple of (float, int, int)
        The fraction (0.0 for a single-colour image), width and height.
    """
    from PIL import Image  # a bokeh dependency

    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        colors = rgb.getcolors(maxcolors=width * height) or []
    total = width * height
    background = max(count for count, _ in colors) if colors else total
    return (total - background) / total if total else 0.0, width, height


def render_html(
    path: str | os.PathLike[str],
    *,
    wait_s: float = 2.0,
    width: int = 1280,
    height: int = 900,
    executable: str | None = None,
) -> BrowserResult:
    """Open *path* in headless Chromium, wait, and report console errors and drawn pixels.

    Parameters
    ----------
    path
        An HTML file.
    wait_s
        Seconds to keep collecting console messages after the load event before the
        screenshot (scripts such as BokehJS draw after load).
    width, height
        Window size in CSS pixels.
    executable
        Chromium to run; default :func:`find_chromium`.

    Returns
    -------
    BrowserResult

    Raises
    ------
    FileNotFoundError
        *path* does not exist.
    BrowserUnavailableError
        Chromium is not installed or did not start.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"No HTML file at {str(file)!r} to open in Chromium.")
    chromium = executable or find_chromium()
    if chromium is None or shutil.which(chromium) is None:
        raise BrowserUnavailableError(
            f"Chromium is not installed{f' at {chromium!r}' if chromium else ''}: run "
            "`apt-get install -y chromium` (`make test` does), or set ZDU_CHROMIUM to a "
            "Chromium executable."
        )
    url = file.as_uri()
    with _chromium(chromium, width, height) as tools:
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=url)
        tools.wait_for("Page.loadEventFired", timeout=60)
        tools.pump(wait_s)
        shot = tools.call("Page.captureScreenshot", format="png")
        events = tools.events
    png = base64.b64decode(shot["data"])
    fraction, shot_width, shot_height = nonblank_fraction(png)
    return BrowserResult(url, _errors(events), fraction, shot_width, shot_height, png)
