"""Evaluation: the paper's experiments at our scale (`pipeinfer bench EXPERIMENT`).

Layout (one responsibility per file):
    experiments.py  the named experiments (modes, acceptance, links, simulate) and their driver
    runner.py       one measured run (RunSpec) on local stages or MPI ranks, checked against iterative
    mpi_rank.py     the per-rank program of MPI runs
    drafting.py     drafters from JSON specs; ReplayDrafter (oracle) for acceptance sweeps
    netem.py        MPI ranks in network namespaces with shaped links (bench/netem/*.sh)
    simulate.py     discrete-event model of the pipeline and the three modes' head policies
    calibrate.py    measures the model's inputs here (stage costs, head overhead, link, drafting)
    projection.py   the `simulate` experiment: validation and projections (deeper, 70B/1.1B, slow links)
    machine.py      machine facts recorded with every result
    results.py      JSON + CSV files
    plots.py        PNG figures (matplotlib, lazily imported)
    report.py       docs/results.md from the latest results

Nothing here is imported by `import pipeinfer`.
"""
from pipeinfer.evaluation.experiments import EXPERIMENTS, Settings, check_outputs, run_experiment
from pipeinfer.evaluation.runner import EvaluationError, RunSpec

__all__ = ["EXPERIMENTS", "Settings", "run_experiment", "check_outputs", "EvaluationError", "RunSpec"]
