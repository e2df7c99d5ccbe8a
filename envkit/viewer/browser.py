"""A headless Chromium driven over the DevTools protocol: how the viewer page is tested.

Starts the Debian ``chromium`` (or ``$ENVKIT_CHROMIUM``) with a throw-away profile, no
network services and ``--remote-debugging-port=0``, and talks to its page over a websocket
(``websocket-client``, in envkit's ``dev`` extra). It records console errors, uncaught
exceptions and JavaScript dialogs (dismissed at once, so an ``alert`` can never block it).

Example (needs chromium; ``bash scripts/setup.sh`` installs it)::

    with HeadlessChromium() as browser:
        browser.open(Path("eval.html"))
        print(browser.evaluate("document.title"), browser.console_errors)
        png = browser.screenshot()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BrowserError", "HeadlessChromium", "find_chromium"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a DevTools command failed or timed out."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$ENVKIT_CHROMIUM``, else ``chromium`` or Chrome on PATH."""
    env = os.environ.get("ENVKIT_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class HeadlessChromium:
    """One headless Chromium process and its first page, driven over DevTools.

    Args:
        executable: The browser binary (default: ``find_chromium()``).
        width: Viewport width in CSS pixels.
        height: Viewport height in CSS pixels.
        timeout: Seconds any single wait (start, command, page load) may take.
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1400,
        height: int = 900,
        timeout: float = 60.0,
    ) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError(
                "Chromium is not installed: run `bash scripts/setup.sh` (it installs the Debian "
                "package `chromium`), or `apt-get install chromium`, or set ENVKIT_CHROMIUM to a "
                "Chromium/Chrome binary"
            )
        resolved = shutil.which(self.executable)
        if resolved is None:
            raise BrowserError(
                f"{self.executable!r} is not an executable file: install chromium "
                "(`bash scripts/setup.sh` or `apt-get install chromium`) or point ENVKIT_CHROMIUM "
                "at a Chromium/Chrome binary"
            )
        self.executable = resolved
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict[str, Any]] = []
        self.dialogs: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._ws: Any = None
        self._next_id = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HeadlessChromium:
        """Starts the browser and connects to its page (idempotent)."""
        if self._proc is not None:
            return self
        import websocket  # websocket-client

        self._profile = tempfile.mkdtemp(prefix="envkit-chromium-")
        self._log = Path(self._profile) / "chromium.log"
        cmd = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            port = self._port()
            page = self._page_target(port)
            self._ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
            )
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.send("Log.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=self.height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise
        return self

    def _port(self) -> int:
        assert self._profile is not None and self._proc is not None
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(
                    f"{self.executable} exited with code {self._proc.returncode} at start: "
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        raise BrowserError(
            f"{self.executable} did not open its DevTools port within {self.timeout:.0f} s: "
            f"{self._log_tail()}"
        )

    def _page_target(self, port: int) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.loads(r.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]
            time.sleep(0.05)
        raise BrowserError(f"Chromium opened no page within {self.timeout:.0f} s")

    def _log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stops the browser and deletes its profile (safe to call twice)."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(timeout=10)
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol
    def _recv(self, deadline: float) -> dict[str, Any]:
        import websocket

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer from Chromium within {self.timeout:.0f} s")
            self._ws.settimeout(left)
            try:
                msg = json.loads(self._ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(str(msg.get("params", {}).get("message")))
                self._ws.send(
                    json.dumps(
                        {
                            "id": self._new_id(),
                            "method": "Page.handleJavaScriptDialog",
                            "params": {"accept": False},
                        }
                    )
                )
            return msg

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send(self, method: str, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Sends one DevTools command and returns its result (events meanwhile are recorded)."""
        if self._ws is None:
            raise BrowserError("the browser is not started: use `with HeadlessChromium() as b:`")
        msg_id = self._new_id()
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """Waits for the next event ``method`` (one already recorded counts) and returns it."""
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._recv(deadline)
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)

    # ------------------------------------------------------------------ page
    def open(self, target: str | Path, timeout: float | None = None) -> float:
        """Loads a URL or a local file and waits for its load event; returns the seconds taken."""
        url = target.resolve().as_uri() if isinstance(target, Path) else target
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        start = time.perf_counter()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)
        return time.perf_counter() - start

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:80]!r}: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Polls ``expression`` until it is truthy and returns its value."""
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} stayed falsy for {limit:.0f} s")
            time.sleep(0.05)

    def screenshot(self, clip_selector: str | None = None) -> bytes:
        """A PNG of the viewport, or of the element ``clip_selector`` matches."""
        params: dict[str, Any] = {"format": "png"}
        if clip_selector is not None:
            box = self.evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(clip_selector)})"
                ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()"
            )
            params["clip"] = {
                "x": box[0],
                "y": box[1],
                "width": max(1, box[2]),
                "height": max(1, box[3]),
                "scale": 1,
            }
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    @property
    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        self._drain()
        out = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                out.append(str(d.get("exception", {}).get("description") or d.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(str(params["entry"].get("text")))
        return out

    def _drain(self) -> None:
        """Records the events already sent by the browser (a no-op round trip)."""
        if self._ws is not None:
            self.send("Runtime.evaluate", expression="0")
