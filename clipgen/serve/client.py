"""Talking to `clipgen serve` from Python: one API call, a server process started on a free
loopback port for as long as a `with` block lasts, and the system's Chromium with the flags this
closed network needs (the tests, bench/bench_serve.py and docs/serve_screenshot.py use them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from email.message import Message
from pathlib import Path


# no background connections (refused here, many at a time), no first-run work, no sandbox (root)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


def find_chromium() -> str | None:
    """$CLIPGEN_CHROMIUM, or the system's chromium on PATH."""
    return os.environ.get("CLIPGEN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url: str, body: bytes | dict | None = None, method: str | None = None, timeout: float = 120,
         headers: dict | None = None) -> tuple[int, dict, Message]:  # fmt: skip
    """(status, JSON body, headers: case-insensitive) of one request; a dict body is sent as JSON."""
    data = json.dumps(body).encode("ascii") if isinstance(body, dict) else body  # \u escapes carry any string
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode("utf-8", "replace")}
        return err.code, payload, err.headers


@contextmanager
def serving(runs: list[Path], *extra: str, log: Path | None = None, timeout: float = 120):
    """Start `clipgen serve RUNS --port P`, wait until /api/health answers, yield its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "clipgen", "serve", *map(str, runs), "--port", str(port), *extra],
                               stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"clipgen serve exited with {process.returncode}" + (f"; see {log}" if log else ""))
            try:
                if call(url + "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("clipgen serve did not become healthy in time")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()
