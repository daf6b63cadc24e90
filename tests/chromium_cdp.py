"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended
by NUL on file descriptors 3 and 4), so tests can load a page, wait for what its scripts do and take screenshots with
the standard library only (no websocket client, no downloaded browser).
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time

# The flags the web-view test has always used, so every Chromium test runs the browser the same way.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required"]


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium(object):
    """One browser with one page (a flat session on a new target)."""

    def __init__(self, profile_dir, width=1280, height=800):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def child_fds():  # in the child: the browser reads commands on fd 3 and writes replies on fd 4
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [chromium_path()] + FLAGS + ["--remote-debugging-pipe", "--user-data-dir={}".format(profile_dir),
                                         "--window-size={},{}".format(width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, to_browser_r, from_browser_w), preexec_fn=child_fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb")
        self._in = os.fdopen(from_browser_r, "rb")
        self._buffer = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _read_message(self):
        while b"\0" not in self._buffer:
            chunk = os.read(self._in.fileno(), 1 << 20)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message.decode("utf-8"))

    def call(self, method, session=False, **params):
        """Send one command and return its result (events arriving meanwhile are dropped)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode("utf-8") + b"\0")
        self._out.flush()
        while True:
            reply = self._read_message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError("{}: {}".format(method, reply["error"]))
                return reply.get("result", {})

    def goto(self, url):
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression):
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError("page script failed: {}".format(result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_for(self, expression, timeout_s=30.0):
        """Poll a JavaScript expression until it is truthy; return its value, or the last one after the timeout."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None  # the page is still loading
            if value:
                return value
            time.sleep(0.2)
        return value

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        with open(str(path), "wb") as handle:
            handle.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close")
        except (OSError, EOFError, RuntimeError, ValueError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._out.close()
        self._in.close()
