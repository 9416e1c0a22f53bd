"""Soak test of `pipeinfer serve`: C clients for M minutes with random disconnects (bounded, loopback
only). Passes when no request failed, every completed greedy response equals the same request's
single-run output, and the server's resident memory stayed flat (the mean of the last tenth of the
samples within 10% + 32 MiB of the mean of the first tenth, after a warm-up).

    python bench/soak_server.py -m smollm2-135m --clients 16 --minutes 30 --parallel 16 -t 2

Prints a JSON summary; exits 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from typing import Dict, List

import httpx2 as httpx

from bench_server import Server, free_port, prompts


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def client(url: str, ps: List[str], want: Dict[str, str], n: int, stop_at: float, p_disconnect: float, seed: int,
           tally: Dict[str, int], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        p = rng.choice(ps)
        body = {"prompt": p, "max_tokens": n, "temperature": 0, "seed": 1}
        try:
            if rng.random() < p_disconnect:  # stream and hang up after a few chunks
                with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=600) as r:
                    r.raise_for_status()
                    for k, _ in enumerate(r.iter_lines()):
                        if k >= rng.randint(1, 6):
                            break
                key = "disconnected"
            elif rng.random() < 0.5:
                text = []
                with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=600) as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            text.append(json.loads(line[6:])["choices"][0]["text"])
                key = "ok" if "".join(text) == want[p] else "mismatch"
            else:
                r = httpx.post(url + "/v1/completions", json=body, timeout=600)
                r.raise_for_status()
                key = "ok" if r.json()["choices"][0]["text"] == want[p] else "mismatch"
        except Exception as e:  # noqa: BLE001 - counted and reported
            key = "error"
            with lock:
                tally.setdefault("errors_seen", []).append(repr(e)[:200])  # type: ignore[arg-type]
        with lock:
            tally[key] = tally.get(key, 0) + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="smollm2-135m")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--stages", type=int, default=1)
    ap.add_argument("--draft", default=None)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("-n", "--tokens", type=int, default=48)
    ap.add_argument("--p-disconnect", type=float, default=0.25)
    a = ap.parse_args()
    from pipeinfer.models import resolve

    model = str(resolve(a.model))
    port = free_port()
    cmd = [sys.executable, "-m", "pipeinfer", "serve", "-m", model, "--port", str(port), "--parallel", str(a.parallel),
           "-c", str(a.parallel * 256), "-t", str(a.threads), "--stages", str(a.stages), "--max-queue", "256",
           "--log-level", "warning"] + (["--draft", a.draft] if a.draft else [])
    import tempfile

    srv = Server(cmd, port, cwd=tempfile.gettempdir())
    ps = prompts(24)
    tally: Dict[str, int] = {}
    lock = threading.Lock()
    samples: List[int] = []
    try:
        want = {}
        for p in ps:  # the single-run outputs
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": p, "max_tokens": a.tokens, "temperature": 0,
                                                              "seed": 1}, timeout=600)
            want[p] = r.json()["choices"][0]["text"]
        stop_at = time.monotonic() + 60 * a.minutes
        threads = [threading.Thread(target=client, args=(srv.url, ps, want, a.tokens, stop_at, a.p_disconnect, i,
                                                           tally, lock)) for i in range(a.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples.append(rss_bytes(srv.proc.pid))
            time.sleep(5)
        for t in threads:
            t.join()
        health = httpx.get(srv.url + "/health").json()
    finally:
        srv.close()
    k = max(1, len(samples) // 10)
    body = samples[k:] if len(samples) > 2 * k else samples  # the first tenth is warm-up
    first = sum(body[:k]) / k
    last = sum(body[-k:]) / k
    flat = last <= first * 1.10 + 32 * 2**20
    errors = tally.pop("errors_seen", [])
    summary = {"tally": tally, "errors": errors[:10], "rss_first_mib": first / 2**20, "rss_last_mib": last / 2**20,
               "rss_max_mib": max(samples) / 2**20 if samples else 0, "rss_flat": flat, "final_health": health,
               "minutes": a.minutes, "clients": a.clients}
    print(json.dumps(summary, indent=1))
    ok = flat and not tally.get("error") and not tally.get("mismatch") and tally.get("ok", 0) > 0
    ok = ok and health["slots_busy"] == 0 and health["queue_depth"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
