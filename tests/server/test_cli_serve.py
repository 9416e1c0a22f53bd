"""`pipeinfer serve` as a user starts it: binds 127.0.0.1, answers, and stops cleanly on Ctrl-C."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx2 as httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_command_answers_and_stops_on_sigint(tiny_path, tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "pipeinfer", "serve", "-m", tiny_path, "--port", str(port), "--stages", "2",
           "--draft", "ngram", "--api-key", "k", "--alias", "tiny", "-c", "256", "-t", "1"]
    # cwd outside the repository, so that the installed package (not the source tree) is imported
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 4},
                       headers={"Authorization": "Bearer k"}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in err


def test_serve_rejects_bad_flags(tiny_path, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipeinfer", "serve", "-m", tiny_path, "--parallel", "0"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "parallel must be an integer in [1, 256]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeinfer", "serve", "-m", tiny_path, "--port", "70000"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--port" in r.stderr
