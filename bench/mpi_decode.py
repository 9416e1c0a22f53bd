"""Run by bench_pipeline_mpi.py under mpiexec: every rank builds the pipeline; rank 0 generates with
the given mode and prints one JSON line of metrics; every rank prints its resident memory.

    mpiexec -n N python mpi_decode.py MODEL MODE DRAFT N_TOKENS PROMPT
"""
import json
import os
import sys

import pipeinfer
from pipeinfer.speculation import SpeculationPolicy


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


model, mode, draft, n, prompt = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
rank = int(os.environ.get("PMI_RANK", "0"))
pipe = pipeinfer.Pipeline(model, n_ctx=512, n_threads=1, mode=mode, draft=None if draft == "-" else draft,
                          speculation=SpeculationPolicy(n_draft=4, p_accept=0.1, max_in_flight=3))
if pipe.is_head:
    pipe.generate(prompt, max_tokens=2, temperature=0)
    pipe.reset()
    s = pipe.generate(prompt, max_tokens=n, temperature=0)
    m = s.metrics()
    m["tokens_out"] = s.tokens
    m["rss_mb_head"] = rss_mb()
    print(json.dumps(m), flush=True)
    pipe.close()
else:
    print(f"RSS rank {rank}: {rss_mb():.1f} MB", file=sys.stderr, flush=True)
