"""Headless Chromium for tests: open a page, collect its console errors, screenshot it, drive it.

`render_page` loads a local HTML file once; `open_browser` keeps a browser open so a test can
open pages (`new_page`), pick files in an <input type=file>, click, run JavaScript and wait
for the page to change.

Chromium is driven through the DevTools protocol over `--remote-debugging-pipe`: JSON messages,
each ending in a NUL byte, read from file descriptor 3 and written to 4. That needs only the
standard library, and it sees errors the way the DevTools console does: uncaught exceptions,
`console.error` calls and browser-side entries such as failed loads, each with its level.
Parsing `--enable-logging=stderr` would miss failed loads and cannot tell console.log from
console.error.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Quiet, local and reproducible: no sandbox (tests may run as root in a container), no GPU,
# no network, no first-run or sync machinery, /tmp instead of a small container /dev/shm.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or took too long."""


@dataclass
class RenderedPage:
    console_errors: list[str]
    screenshot_png: bytes


def find_chromium() -> str | None:
    """The path of a Chromium executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def render_page(
    html: Path, *, chromium: str, width: int = 1200, height: int = 900, timeout_s: float = 30.0
) -> RenderedPage:
    """Load `html` in a fresh headless Chromium: its console errors and a PNG of the viewport."""
    with open_browser(chromium, timeout_s) as browser:
        page = browser.new_page(Path(html).resolve().as_uri(), width, height)
        shot = page.screenshot()
        return RenderedPage(page.console_errors(), shot)


@contextmanager
def open_browser(chromium: str, timeout_s: float = 60.0) -> Iterator[_DevToolsPipe]:
    """A fresh headless Chromium with its own profile, closed on exit; `timeout_s` bounds it all."""
    with tempfile.TemporaryDirectory(prefix="fakescope-chromium-") as profile:
        with _DevToolsPipe(chromium, Path(profile), timeout_s) as devtools:
            yield devtools


class Page:
    """One tab: run JavaScript, wait for a condition, pick files, take screenshots."""

    def __init__(self, devtools: _DevToolsPipe, session: str):
        self._devtools = devtools
        self.session = session

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited); page errors raise."""
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        reply = self._devtools.call("Runtime.evaluate", params, session=self.session)
        if "exceptionDetails" in reply:
            raise BrowserError(
                f"{expression!r} threw: "
                f"{reply['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, poll_s: float = 0.1) -> Any:
        """Evaluate `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"waited {timeout_s} s for {expression!r}")
            time.sleep(poll_s)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Pick `paths` in the <input type=file> at `selector`, as a user would (fires `change`)."""
        root = self._devtools.call("DOM.getDocument", session=self.session)["root"]["nodeId"]
        found = self._devtools.call(
            "DOM.querySelector", {"nodeId": root, "selector": selector}, session=self.session
        )
        if not found.get("nodeId"):
            raise BrowserError(f"no element matches {selector!r}")
        files = [str(Path(p).resolve()) for p in paths]
        self._devtools.call(
            "DOM.setFileInputFiles",
            {"nodeId": found["nodeId"], "files": files},
            session=self.session,
        )

    def screenshot(self) -> bytes:
        """A PNG of the viewport, after layout and paint have caught up."""
        settle = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        self._devtools.call(
            "Runtime.evaluate", {"expression": settle, "awaitPromise": True}, session=self.session
        )
        shot = self._devtools.call(
            "Page.captureScreenshot", {"format": "png"}, session=self.session
        )
        return base64.b64decode(shot["data"])

    def console_errors(self) -> list[str]:
        errors = (
            _describe_error(e) for e in self._devtools.events if e.get("sessionId") == self.session
        )
        return [e for e in errors if e is not None]


def _fd_at_least(fd: int, lowest: int) -> int:
    """Move `fd` to a number >= `lowest`, so it cannot clash with the child's fds 3 and 4."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class _DevToolsPipe:
    def __init__(self, chromium: str, profile: Path, timeout_s: float):
        self.deadline = time.monotonic() + timeout_s
        command_read, self._command_write = (_fd_at_least(fd, 10) for fd in os.pipe())
        self._reply_read, reply_write = (_fd_at_least(fd, 10) for fd in os.pipe())
        # bash (dash refuses fds above 9) puts the pipe ends on fds 3 and 4 for Chromium.
        wiring = f'exec "$0" "$@" 3<&{command_read} 4>&{reply_write}'
        args = [chromium, *_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            ["bash", "-c", wiring, *args],
            pass_fds=(command_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(command_read)
        os.close(reply_write)
        self._buffer = bytearray()
        self._next_id = 0
        self.events: list[dict] = []

    def __enter__(self) -> _DevToolsPipe:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self._process.poll() is None:
                self._send("Browser.close")
        except OSError:
            pass  # the browser is already gone
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._command_write)
        os.close(self._reply_read)
        self._stderr.close()

    def new_page(
        self, url: str, width: int = 1200, height: int = 900, *, mobile: bool = False
    ) -> Page:
        """A new tab of `width` x `height` CSS px (a phone's viewport when `mobile`), loaded."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self._wait_for_event("Page.loadEventFired", session)
        return Page(self, session)

    def call(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        message_id = self._send(method, params, session)
        while True:
            message = self._receive()
            if message.get("id") != message_id:
                self.events.append(message)
                continue
            if "error" in message:
                raise BrowserError(f"{method} failed: {message['error']}")
            return message.get("result", {})

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._command_write, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _wait_for_event(self, method: str, session: str) -> None:
        def matches(event: dict) -> bool:
            return event.get("method") == method and event.get("sessionId") == session

        if any(matches(e) for e in self.events):
            return
        while True:
            message = self._receive()
            self.events.append(message)
            if matches(message):
                return

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._reply_read], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._reply_read, 1 << 16)
            if not chunk:
                tail = self._stderr_tail()
                raise BrowserError(f"Chromium closed the pipe; its last words:\n{tail}")
            self._buffer += chunk
        end = self._buffer.index(b"\0")
        message = json.loads(self._buffer[:end])
        del self._buffer[: end + 1]
        return message

    def _stderr_tail(self, size: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-size:].decode("utf-8", "replace")


def _describe_error(event: dict) -> str | None:
    """A readable line for a DevTools event that the console shows as an error, else None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return details.get("exception", {}).get("description") or details.get("text", "exception")
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        args = params.get("args", [])
        return "console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in args)
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        entry = params["entry"]
        return f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}"
    return None
