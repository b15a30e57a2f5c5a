"""The peers of ``engine serve`` that ``bench/gateway.py`` measures in the same run when they are
installed: LiteLLM's proxy (the ``litellm`` command of ``pip install 'litellm[proxy]'``) and
Portkey's gateway (the npm package ``@portkey-ai/gateway``, installed into ``bench/.peers`` on
first use when ``npm`` is on the machine). Each runs pinned to the gateway's core, forwarding to
the same loopback upstream, and answers the same requests with the bench's client key.

Both are started in their lightest documented setup: LiteLLM's proxy with one worker, a master
key (no database), no retries, the local model-cost map and no telemetry; Portkey's gateway
headless, pointed at the upstream per request (``x-portkey-custom-host``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import MODEL, Process, Upstream, free_port, pin

__all__ = ["PORTKEY", "Peer", "litellm_binary", "portkey_script"]

ROOT = Path(__file__).resolve().parent.parent
PORTKEY = "@portkey-ai/gateway@1"
PEERS = ROOT / "bench" / ".peers"  # (git-ignored) where npm installs Portkey's gateway


class Peer(Process):
    """One peer's process: its URLs and the headers its requests carry."""

    name: str
    url: str
    stream_url: str | None  # None: this peer cannot relay the bench's stream (said in the table)
    headers: dict[str, str]
    stream_headers: dict[str, str]

    def pause(self) -> None:
        """Stopped (SIGSTOP) while another column is measured: LiteLLM's proxy does background
        work on the core the measured server has to itself."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def _wait(self, url: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {seconds:.0f} s")


def litellm_binary() -> str | None:
    """The ``litellm`` command with its proxy installed (this venv's first, then PATH)."""
    for candidate in (Path(sys.executable).parent / "litellm", shutil.which("litellm")):
        if candidate is not None and Path(candidate).is_file():
            python = Path(candidate).parent / "python"
            probe = [str(python), "-c", "import litellm.proxy.proxy_server"] if python.exists() else None
            if probe is None or subprocess.run(probe, capture_output=True, timeout=120).returncode == 0:
                return str(candidate)
    return None


class LiteLLMProxy(Peer):
    def __init__(self, binary: str, up: Upstream, core: int | None, key: str) -> None:
        self.name = "LiteLLM proxy"
        self.dir = Path(tempfile.mkdtemp(prefix="bench-litellm-"))
        models = "".join(
            f"  - model_name: {name}\n"
            f"    litellm_params: {{model: openai/{MODEL}, api_base: '{base}/v1', api_key: sk-bench}}\n"
            for name, base in ((MODEL, up.url), ("stream", up.stream_url))
        )
        (self.dir / "config.yaml").write_text(
            f"model_list:\n{models}"
            "litellm_settings: {num_retries: 0, telemetry: false, drop_params: true}\n"
            f"general_settings: {{master_key: '{key}', disable_spend_logs: true}}\n"
        )
        port = free_port()
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        command = [binary, "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(port)]
        self.proc = subprocess.Popen(
            [*command, "--num_workers", "1"],
            cwd=self.dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        self.url = self.stream_url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.stream_headers = self.headers
        try:
            self._wait(f"http://127.0.0.1:{port}/health/liveliness", 120)
        except BaseException:
            self.stop()
            raise


def portkey_script() -> Path | None:
    """Portkey's gateway's start script, installed with npm into ``bench/.peers`` if need be."""
    script = PEERS / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if script.exists() or shutil.which("node") is None:
        return script if script.exists() else None
    npm = shutil.which("npm")
    if npm is None:
        return None
    PEERS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(PEERS), PORTKEY],
        capture_output=True,
        timeout=600,
    )
    return script if done.returncode == 0 and script.exists() else None


class PortkeyGateway(Peer):
    def __init__(self, script: Path, up: Upstream, core: int | None) -> None:
        self.name = "Portkey gateway"
        self.dir = Path(tempfile.mkdtemp(prefix="bench-portkey-"))
        port = free_port()
        node = shutil.which("node") or "node"
        self.proc = subprocess.Popen(
            [node, str(script), f"--port={port}", "--headless"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: pin(core)) if core is not None else None,
        )
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        # Portkey 1.15 answers the bench's stream with a 500 ("TypeError: immutable": it edits
        # the headers of the upstream's own response), sent with a length or chunked: no row
        self.stream_url = None
        base = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        base["x-portkey-provider"] = "openai"
        self.headers = {**base, "x-portkey-custom-host": up.url + "/v1"}
        self.stream_headers = {**base, "x-portkey-custom-host": up.stream_url + "/v1"}
        try:
            self._wait(f"http://127.0.0.1:{port}/", 60)
        except BaseException:
            self.stop()
            raise
