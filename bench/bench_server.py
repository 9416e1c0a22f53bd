"""Serving throughput: aggregate tokens/s of C concurrent clients (greedy, N tokens each) against
`pipeinfer serve --parallel P`, on 1 and 2 stages, side by side with native llama.cpp's
`llama-server -np P` on the same model and threads; and one client against Pipeline.stream directly.

Every figure comes from one run of this script, the configurations interleaved (A B A B), so compare
the ratios it prints, not absolute numbers across runs (--baseline adds the servers of another build to
the same rounds, for an A/B of two builds) (this machine is shared; see
shared/reference/measuring.md). Run it on a quiet machine and quote `uptime` with the results:

    python bench/bench_server.py -m smollm2-135m -t 2 --clients 1,4,16 --stages 1,2 \\
        --llama-server /work/llamacpp-native/.../build/bin/llama-server

It checks its outputs first: every greedy response equals the same request sent alone.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

import httpx2 as httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompts(n: int) -> List[str]:
    topics = ["the sea", "a robot", "winter", "a city at night", "mathematics", "a lost key", "bread", "trains",
              "the moon", "a garden", "music", "rain", "a library", "mountains", "a clock", "friendship"]
    return [f"Write a short story about {topics[i % len(topics)]} (number {i})." for i in range(n)]


class Server:
    """A server subprocess on 127.0.0.1 (pipeinfer serve or llama-server)."""

    def __init__(self, cmd: List[str], port: int, cwd: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {' '.join(cmd)}\n{self.log.read().decode()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


NO_EOG: Dict[str, float] = {}  # end-of-generation token ids -> -100: every response has n tokens


_local = threading.local()


def complete(url: str, prompt: str, n: int) -> Dict:
    """One request on this thread's kept-alive connection (as a client library would)."""
    if getattr(_local, "client", None) is None:
        _local.client = httpx.Client(timeout=600)
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "seed": 1, "logit_bias": NO_EOG}
    r = _local.client.post(url + "/v1/completions", json=body)
    r.raise_for_status()
    return r.json()


def run_clients(url: str, ps: List[str], n: int) -> "tuple[float, List[str], int]":
    """All prompts at once, one client each: (wall seconds, texts, completion tokens)."""
    with ThreadPoolExecutor(len(ps)) as ex:
        list(ex.map(lambda p: complete(url, "warm-up", 1), ps))  # connections open before the clock starts
        t0 = time.perf_counter()
        outs = list(ex.map(lambda p: complete(url, p, n), ps))
        dt = time.perf_counter() - t0
    return dt, [o["choices"][0]["text"] for o in outs], sum(o["usage"]["completion_tokens"] for o in outs)


def direct_stream_tps(pipe: Any, prompt: str, n: int) -> float:
    """Tokens/s of one Pipeline.stream generation in this process (the server's request without HTTP),
    prompt processing included as in a request's wall time."""
    t0 = time.perf_counter()
    s = pipe.stream(prompt, max_tokens=n, temperature=0, seed=1, logit_bias={int(k): v for k, v in NO_EOG.items()})
    for _ in s:
        pass
    return len(s.tokens) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="smollm2-135m")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--stages", default="1,2")
    ap.add_argument("-n", "--tokens", type=int, default=64)
    ap.add_argument("--ctx-per-slot", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    ap.add_argument("--llama-server", default=None, help="path of native llama.cpp's llama-server binary")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--baseline", default=None,
                    help="PYTHONPATH of another pipeinfer build (scripts/dev-build.sh prints one): its servers run "
                         "in the same rounds as 'baseline-Nstage', an A/B of two builds under the same load")
    a = ap.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    stage_counts = [int(s) for s in a.stages.split(",")]
    parallel = max(clients)
    from pipeinfer.models import resolve

    model_path = str(resolve(a.model))
    from pipeinfer import _core
    from pipeinfer.tokenizer import Tokenizer

    tok = Tokenizer.from_metadata(_core.GGUFFile(model_path).metadata())
    NO_EOG.update({str(t): -100.0 for t in range(tok.n_vocab) if tok.is_eog(t)})
    ps = prompts(parallel)
    results: Dict[str, Dict[int, List[float]]] = {}
    servers = {}
    builds = {"pipeinfer": None}
    if a.baseline:
        builds["baseline"] = dict(os.environ, PYTHONPATH=a.baseline)
    for st in stage_counts:
        for build, env in builds.items():
            port = free_port()
            servers[f"{build}-{st}stage"] = Server(
                [sys.executable, "-m", "pipeinfer", "serve", "-m", model_path, "--port", str(port), "--parallel",
                 str(parallel), "-c", str(parallel * a.ctx_per_slot), "-t", str(a.threads), "--stages", str(st),
                 "--max-queue", "256", "--log-level", "warning"], port, cwd=tempfile.gettempdir(), env=env)
    if a.llama_server:
        port = free_port()
        servers["llama-server"] = Server(
            [a.llama_server, "-m", model_path, "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
             "-c", str(parallel * a.ctx_per_slot), "-t", str(a.threads), "-tb", str(a.threads), "--no-webui"], port)
    try:
        alone = {}
        for name, srv in servers.items():  # correctness first: concurrent == alone, for every server
            alone[name] = [complete(srv.url, p, a.tokens)["choices"][0]["text"] for p in ps]
            _, texts, _ = run_clients(srv.url, ps, a.tokens)
            same = sum(x == y for x, y in zip(texts, alone[name]))
            print(f"[check] {name}: {same}/{len(ps)} concurrent greedy responses equal their single-request output")
        for _ in range(a.rounds):  # interleaved: every configuration once per round
            for c in clients:
                for name, srv in servers.items():
                    dt, _, toks = run_clients(srv.url, ps[:c], a.tokens)
                    results.setdefault(name, {}).setdefault(c, []).append(toks / dt)
        # one client against Pipeline.stream in this process (same model, threads, stages, context per
        # slot), request after request: server, direct, server, direct, ...
        import pipeinfer

        direct_runs: Dict[int, List[float]] = {st: [] for st in stage_counts}
        alone: Dict[int, List[float]] = {st: [] for st in stage_counts}
        for st in stage_counts:
            srv = servers[f"pipeinfer-{st}stage"]
            with pipeinfer.Pipeline(model_path, n_threads=a.threads, stages=st, n_ctx=a.ctx_per_slot) as pipe:
                direct_stream_tps(pipe, ps[0], a.tokens)  # warm-up
                for _ in range(3 * a.rounds):
                    dt, _, toks = run_clients(srv.url, ps[:1], a.tokens)
                    alone[st].append(toks / dt)
                    direct_runs[st].append(direct_stream_tps(pipe, ps[0], a.tokens))
        direct = {st: sorted(v)[len(v) // 2] for st, v in direct_runs.items()}
        one_alone = {st: sorted(v)[len(v) // 2] for st, v in alone.items()}
    finally:
        for srv in servers.values():
            srv.close()
    print(f"\nload average: {os.getloadavg()}")
    print("aggregate tokens/s (median over rounds); ratio to 1 client; ratio to llama-server")
    med = {n: {c: sorted(v)[len(v) // 2] for c, v in r.items()} for n, r in results.items()}
    for name, r in med.items():
        for c in clients:
            line = f"{name:22s} clients={c:3d}: {r[c]:8.1f} tok/s  x{r[c] / max(r[clients[0]], 1e-9):.2f} vs {clients[0]} client"
            if "llama-server" in med and name != "llama-server":
                line += f"  {r[c] / med['llama-server'][c]:.2f}x llama-server"
            if name.startswith("pipeinfer-") and "baseline-" + name[len("pipeinfer-"):] in med:
                line += f"  {r[c] / med['baseline-' + name[len('pipeinfer-'):]][c]:.2f}x baseline"
            print(line)
    for st in stage_counts:
        one = one_alone[st]
        print(f"one client, {st} stage(s), alternating requests: server {one:.1f} tok/s vs Pipeline.stream "
              f"{direct[st]:.1f} tok/s = {one / direct[st]:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median_tps": med, "direct_tps": direct, "one_client_server_tps": one_alone,
                       "load": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
