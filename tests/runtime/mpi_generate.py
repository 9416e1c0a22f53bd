"""Run under mpiexec by tests: every rank builds the same Pipeline; rank 0 generates greedily and prints
one JSON line with the tokens and stage stats; other ranks serve and return when rank 0 closes.

    mpiexec -n N python mpi_generate.py MODEL N_TOKENS [--pidfile-dir DIR] [--dead-after S] [--mode M] [--exact] ...

With --pidfile-dir every rank writes DIR/rank<r>.pid at start and the head writes DIR/generating once the
first token is out. A TransportError is printed as "TransportError(rank=<rank at fault>): <message>" (exit 3).
"""
import argparse
import json
import os
import sys
import time

import pipeinfer

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("n_tokens", type=int)
ap.add_argument("--prompt", default="5,17,99,3,250")
ap.add_argument("--pidfile-dir", default=None)
ap.add_argument("--dead-after", type=float, default=10.0)
ap.add_argument("--mode", default=None)
ap.add_argument("--draft", default=None)
ap.add_argument("--exact", action="store_true")
ap.add_argument("--draft-ranks", type=int, default=None)
ap.add_argument("--sampling", default="{}", help="JSON object of extra sampling fields for stream()")
ap.add_argument("--fixed-draft", type=int, default=0,
                help="K > 0: a fixed policy of K drafts per micro-batch (speculation always on)")
ap.add_argument("--slow", type=float, default=0.0, help="seconds to sleep between tokens on the head")
ap.add_argument("--model-rank", action="append", default=[],
                help="RANK:PATH, another model path for that rank (fault tests: missing, different)")
a = ap.parse_args()

rank = int(os.environ.get("PMI_RANK", "0"))
if a.pidfile_dir:
    with open(os.path.join(a.pidfile_dir, f"rank{rank}.pid"), "w") as f:
        f.write(str(os.getpid()))
policy = (pipeinfer.SpeculationPolicy(n_draft=a.fixed_draft, p_accept=0.0, adaptive=False) if a.fixed_draft > 0
          else None)
try:
    model = dict(x.split(":", 1) for x in a.model_rank).get(str(rank), a.model)
    pipe = pipeinfer.Pipeline(model, n_ctx=256, n_threads=1, dead_after_s=a.dead_after, mode=a.mode,
                              draft=a.draft, exact=a.exact, draft_ranks=a.draft_ranks, speculation=policy)
    if pipe.is_head:
        prompt = [int(x) for x in a.prompt.split(",")]
        sampling = {"temperature": 0, **json.loads(a.sampling)}
        s = pipe.stream(prompt, max_tokens=a.n_tokens, **sampling)
        t0 = time.time()
        for i, _ in enumerate(s):
            if i == 0:
                print("FIRST", flush=True)
                if a.pidfile_dir:
                    open(os.path.join(a.pidfile_dir, "generating"), "w").close()
            if a.slow:
                time.sleep(a.slow)
        stats = pipe.stage_stats()
        logprobs = [[r.token, r.logprob] for r in s.logprobs] if s.logprobs is not None else None
        print(json.dumps({"tokens": s.tokens, "stages": stats, "transport": pipe._native.transport,
                          "stats": s.stats.as_dict(), "logprobs": logprobs}), flush=True)
        pipe.close()
except pipeinfer.TransportError as e:
    print(f"TransportError(rank={e.rank}): {e}", file=sys.stderr, flush=True)
    sys.exit(3)
except pipeinfer.ModelError as e:
    print(f"ModelError: {e}", file=sys.stderr, flush=True)
    sys.exit(4)
