"""The per-rank program of measured MPI runs:

    mpiexec -n N python -m pipeinfer.evaluation.mpi_rank SPEC.json OUT.json

Every rank builds the pipeline (rank 0 is the head; the others serve their stage until the head closes
it); rank 0 runs runner.generate_once and writes the result as JSON to OUT.json. It owns nothing else.
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list) -> int:
    import pipeinfer
    from pipeinfer import _core
    from pipeinfer.evaluation.drafting import build_drafter
    from pipeinfer.evaluation.runner import RunSpec, generate_once
    from pipeinfer.speculation import SpeculationPolicy

    spec = RunSpec(**json.loads(open(argv[1]).read()))
    rank = int(os.environ.get("PMI_RANK", "0"))
    world = spec.stages + spec.draft_ranks
    drafter = None
    if spec.mode != "iterative":
        drafts_here = rank == world - 1 if spec.draft_ranks else rank == 0
        # with a draft rank the head only needs to know that a drafter exists (it runs elsewhere)
        drafter = build_drafter(spec.draft, _core.GGUFFile(spec.model).metadata()) if drafts_here else "remote"
    pipe = pipeinfer.Pipeline(spec.model, n_ctx=spec.n_ctx, n_threads=spec.n_threads, transport="mpi",
                              mode=spec.mode if rank == 0 else None, draft=drafter,
                              speculation=SpeculationPolicy(**spec.policy),
                              draft_ranks=spec.draft_ranks if spec.mode != "iterative" else 0,
                              trace=spec.trace if rank == 0 else False)
    if not pipe.is_head:
        return 0
    res = generate_once(pipe, spec.prompt, spec.n_gen)
    pipe.close()
    with open(argv[2] + ".tmp", "w") as f:
        json.dump(res, f)
    os.replace(argv[2] + ".tmp", argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
