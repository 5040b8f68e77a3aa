"""JupyterLab for the browser test: a free localhost port, a fresh token, and settings kept in a
temporary folder so neither the user's own JupyterLab state nor the test's leaks into the other."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The address a person gets from `make lab`, opened on one notebook in a fresh workspace
        (``reset``), so tabs of earlier notebooks do not come back and start their kernels again."""
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"


def _ready(base: str, token: str) -> bool:
    req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_lab(root: Path, state: Path, timeout: float = 90) -> Lab:
    """Start ``jupyter lab`` from this Python environment serving ``root``; wait until it answers."""
    port, token = free_port(), secrets.token_hex(16)
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(state / "runtime")}
    log = state / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:  # CI runs as root; Jupyter refuses that unless told
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}; its log:\n{log.read_text()[-3000:]}")
        if _ready(f"http://127.0.0.1:{port}", token):
            return Lab(root, port, token, proc, log)
        time.sleep(0.5)
    stop_lab(Lab(root, port, token, proc, log))
    raise TimeoutError(f"jupyter lab did not answer on 127.0.0.1:{port} within {timeout:.0f} s; log: {log}")


def shutdown_kernels(lab: Lab) -> None:
    """Stop every kernel, as closing a notebook with 'shut down kernel' would."""
    import json
    req = urllib.request.Request(f"{lab.base}/api/kernels", headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        kernels = json.load(r)
    for k in kernels:
        urllib.request.urlopen(urllib.request.Request(
            f"{lab.base}/api/kernels/{k['id']}", method="DELETE",
            headers={"Authorization": f"token {lab.token}"}), timeout=30).close()


def stop_lab(lab: Lab) -> None:
    lab.process.terminate()
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        lab.process.kill()
        lab.process.wait(timeout=10)
