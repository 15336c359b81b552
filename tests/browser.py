"""Headless Chromium for tests: open a local HTML file, collect its console errors, screenshot it.

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
from dataclasses import dataclass
from pathlib import Path

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
    with tempfile.TemporaryDirectory(prefix="fakescope-chromium-") as profile:
        with _DevToolsPipe(chromium, Path(profile), timeout_s) as devtools:
            return devtools.render(Path(html).resolve().as_uri(), width, height)


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

    def render(self, url: str, width: int, height: int) -> RenderedPage:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self._wait_for_event("Page.loadEventFired", session)
        # Two animation frames after load: layout and paint have happened.
        settle = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        self.call("Runtime.evaluate", {"expression": settle, "awaitPromise": True}, session=session)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        errors = [_describe_error(e) for e in self.events if e.get("sessionId") == session]
        return RenderedPage([e for e in errors if e is not None], base64.b64decode(shot["data"]))

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
