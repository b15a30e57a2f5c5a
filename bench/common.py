"""Helpers for ``bench/overhead.py``: the fixed payloads, a loopback upstream in its own process
(nginx when installed, else the bundled fake provider), CPU pinning and sample statistics.

The upstream answers every ``POST /v1/chat/completions`` with one fixed OpenAI chat completion
and every ``POST /stream/v1/chat/completions`` with one fixed 50-chunk SSE body, so every client
is measured against exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BODY",
    "COMPLETION",
    "HEADERS",
    "MODEL",
    "REQUEST",
    "SSE",
    "STREAM_BODY",
    "STREAM_CHUNKS",
    "Process",
    "Stats",
    "Upstream",
    "free_port",
    "pin",
    "start_upstream",
]

MODEL = "gpt-4o-mini"
STREAM_CHUNKS = 50

# What every client sends (raw clients send these exact bytes; the engine renders its own).
REQUEST = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello."}],
    "temperature": 0,
    "max_tokens": 64,
}
BODY = json.dumps(REQUEST, separators=(",", ":")).encode()
STREAM_BODY = json.dumps(
    {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}, separators=(",", ":")
).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

# What the upstream answers. No "$" or "'" in it: it is written into nginx.conf verbatim.
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20},
    },
    separators=(",", ":"),
)


def _sse() -> bytes:
    """50 text-delta chunks, a finish chunk, a usage chunk and ``[DONE]``, as OpenAI sends them."""
    words = (
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua"
    ).split()
    head = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
    }
    events = []
    for i in range(STREAM_CHUNKS):
        delta = {"content": words[i % len(words)] + " "}
        if i == 0:
            delta["role"] = "assistant"
        events.append(
            {
                **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
                "usage": None,
            }
        )
    events.append(
        {
            **head,
            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
            "usage": None,
        }
    )
    events.append(
        {
            **head,
            "choices": [],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": STREAM_CHUNKS,
                "total_tokens": 11 + STREAM_CHUNKS,
            },
        }
    )
    text = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events)
    return (text + "data: [DONE]\n\n").encode()


SSE = _sse()


# -- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Per-request latencies in microseconds."""

    median: float
    p99: float
    n: int
    cpu: float | None = None  # client CPU (user + system) per request

    @classmethod
    def of(cls, samples_ns: Sequence[int], cpu_ns: int | None = None) -> Stats:
        us = sorted(s / 1000 for s in samples_ns)
        p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
        cpu = cpu_ns / 1000 / len(us) if cpu_ns is not None else None
        return cls(statistics.median(us), p99, len(us), cpu)


# -- processes and cores ------------------------------------------------------------------------


class Process:
    """A server the bench started: CPU and RSS read from /proc; stopped with its work directory."""

    proc: subprocess.Popen[bytes]
    dir: Path

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """Resident set size, KiB."""
        match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(match.group(1)) if match else 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def pin(core: int | None) -> bool:
    """Pin this process to one core; ``False`` where that is impossible."""
    if core is None:
        return False
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(url, data=BODY, headers=HEADERS, method="POST")
            with urllib.request.urlopen(req, timeout=1) as r:
                r.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Upstream:
    """A running loopback upstream: ``url`` (for completions, ``url + "/v1"``), ``stream_url``
    (the base URL answering with the SSE body), what it is, and the extra headers a client must
    send so the fake fallback streams exactly 50 chunks."""

    kind: str  # "nginx" or "fake"
    url: str
    stream_url: str
    core: int | None
    stream_headers: dict[str, str]
    proc: subprocess.Popen[bytes]
    workdir: Path | None = None
    answer: str = "Hello! How can I help you today?"  # the completion's text

    def describe(self) -> str:
        where = f"pinned to core {self.core}" if self.core is not None else "not pinned"
        if self.kind == "nginx":
            return f"nginx {nginx_version()} (1 worker, keepalive, access_log off, {where})"
        return f"bundled fake provider, `python -m engine.fake` ({where})"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


NGINX_CONF = """\
# Generated by bench/common.py: a fixed chat completion and a fixed 50-chunk SSE body.
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    tcp_nodelay on;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{completion}';
        }}
        location = /stream/v1/chat/completions {{
            # The static handler refuses POST (405); error_page re-enters as a GET of the file.
            error_page 405 =200 /sse.txt;
            return 405;
        }}
        location = /sse.txt {{
            internal;
            types {{ }}
            default_type text/event-stream;
            root {dir};
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(path, os.X_OK):
            return path
    return None


def nginx_version() -> str:
    binary = nginx_binary()
    if binary is None:
        return "?"
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
    return out.strip().rsplit("/", 1)[-1]


def nginx_conf(directory: Path, port: int) -> str:
    return NGINX_CONF.format(dir=directory, port=port, completion=COMPLETION)


def _preexec(core: int | None):  # type: ignore[no-untyped-def]
    def run() -> None:
        pin(core)

    return run


def start_upstream(core: int | None, *, prefer: str = "nginx") -> Upstream:
    """nginx on ``core`` when installed (and ``prefer`` is "nginx"), else the fake provider."""
    port = free_port()
    binary = nginx_binary() if prefer == "nginx" else None
    if binary is not None:
        workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        os.chmod(workdir, 0o755)
        (workdir / "sse.txt").write_bytes(SSE)
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_conf(workdir, port))
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_preexec(core),
        )
        url = f"http://127.0.0.1:{port}"
        up = Upstream("nginx", url, url + "/stream", core, {}, proc, workdir)
        try:
            _wait_http(url + "/v1/chat/completions")
        except OSError:
            up.stop()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"nginx did not start: {err.strip()}") from None
        return up
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.fake", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_preexec(core),
    )
    url = f"http://127.0.0.1:{port}"
    # The fake streams one word per chunk: ask for exactly 50 words in 50 chunks.
    up = Upstream(
        "fake",
        url,
        url,
        core,
        {"x-fake": f"words={STREAM_CHUNKS} chunks={STREAM_CHUNKS}"},
        proc,
        answer="echo: " + REQUEST["messages"][0]["content"],
    )  # type: ignore[index]
    _wait_http(url + "/v1/chat/completions")
    return up


@contextlib.contextmanager
def upstream(core: int | None, prefer: str = "nginx") -> Iterator[Upstream]:
    up = start_upstream(core, prefer=prefer)
    try:
        yield up
    finally:
        up.stop()
