"""Headless Chromium driven through the DevTools protocol: fill a login form, open a page, read it, screenshot it.

``chromium --screenshot`` (what ``scripts/ui_check.py`` uses) opens one URL with no way to log in; the catalogue
page's test must log in as a person does. This starts Debian's ``chromium`` with ``--remote-debugging-port=0`` in a
fresh profile, reads the port it chose from the profile's ``DevToolsActivePort``, and speaks the protocol over a
websocket (the ``websockets`` package, which Airflow's API server already needs). Every wait polls a condition in
the page against a deadline.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"
START_DEADLINE = 30.0
POLL_INTERVAL = 0.2


class BrowserError(Exception):
    """Chromium did not start, or a page did not become what was waited for; the message says what it showed."""


class Browser:
    def __init__(self, profile: Path, width: int = 1600, height: int = 1000) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # run as root in a container
                "--disable-gpu",
                "--no-first-run",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_DEADLINE
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"chromium did not open its DevTools port (status {self.process.returncode})")
            time.sleep(POLL_INTERVAL)
        port, path = port_file.read_text().splitlines()[:2]
        self._connection = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        self._socket = self._connection.__enter__()
        self._ids = itertools.count(1)
        target = self._send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.command("Page.enable")
        self.command("Runtime.enable")

    def _send(self, method: str, session: str | None = None, **params) -> dict:
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._socket.send(json.dumps(message))
        while True:
            reply = json.loads(self._socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def command(self, method: str, **params) -> dict:
        return self._send(method, self._session, **params)

    def evaluate(self, expression: str):
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.command("Page.navigate", url=url)

    def text(self, frames: bool = True) -> str:
        """What a person reads on the page, with the text of same-origin iframes (an external view is one)."""
        return self.evaluate(
            "(() => { let t = document.body ? document.body.innerText : '';"
            + (
                " for (const f of document.querySelectorAll('iframe')) {"
                " try { t += '\\n' + f.contentDocument.body.innerText; } catch (e) {} }"
                if frames
                else ""
            )
            + " return t; })()"
        )

    def wait_for_text(self, expected: list[str], deadline_seconds: float = 60.0) -> str:
        deadline = time.monotonic() + deadline_seconds
        text = ""
        while time.monotonic() < deadline:
            text = self.text() or ""
            if all(item in text for item in expected):
                return text
            time.sleep(POLL_INTERVAL)
        missing = [item for item in expected if item not in text]
        raise BrowserError(f"the page never showed {missing}; it showed:\n{' '.join(text.split())[:2000]}")

    def wait_for(self, expression: str, what: str, deadline_seconds: float = 60.0) -> None:
        """Poll until the JavaScript ``expression`` is truthy in the page."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.evaluate(f"!!({expression})"):
                return
            time.sleep(POLL_INTERVAL)
        raise BrowserError(
            f"gave up waiting for {what}; the page showed:\n{' '.join((self.text() or '').split())[:2000]}"
        )

    def fill(self, selector: str, value: str) -> None:
        """Type into an input as a person would, so that a React form sees the change."""
        self.evaluate(
            "(() => { const e = document.querySelector(" + json.dumps(selector) + ");"
            " const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
            " set.call(e, " + json.dumps(value) + "); e.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )

    def screenshot(self, path: Path) -> None:
        data = self.command("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            if getattr(self, "_connection", None) is not None:
                self._connection.__exit__(None, None, None)
        finally:
            self.process.kill()
            self.process.wait()
