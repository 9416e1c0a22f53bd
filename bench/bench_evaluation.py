"""End-to-end comparisons of the evaluation (pipeinfer.evaluation) as pytest-benchmark benchmarks, each
checking its greedy output against iterative decoding:

- the three modes on a tiny synthetic model (no download; always runs), 1 and 2 local stages;
- speed against acceptance on SmolLM2-135M, 2 local stages: an oracle drafter (replays the greedy
  reference) corrupted by NoisyDrafter at error rates 0 / 0.5 / 1 (realmodel);
- the discrete-event pipeline model itself (iterative throughput checked against its closed form).

    pytest bench/bench_evaluation.py --benchmark-only
    pytest bench --benchmark-only --benchmark-save=baseline
    pytest bench --benchmark-only --benchmark-compare=0001 --benchmark-compare-fail=median:10%
"""
from __future__ import annotations

import pytest

from pipeinfer.evaluation.experiments import PAPER_PROMPT
from pipeinfer.evaluation.runner import RunSpec, run

MODES = ("iterative", "speculative", "pipeinfer")
_REF: dict = {}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    import synthetic  # tests/support (bench/conftest.py puts it on sys.path)

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama-q8_0.gguf"
    synthetic.write_tiny_model(path, "llama", weight_type="q8_0", n_layer=4)
    return str(path)


def _reference(model: str, prompt: str, n_gen: int) -> dict:
    key = (model, prompt, n_gen)
    if key not in _REF:
        rec = run(RunSpec(model=model, mode="iterative", prompt=prompt, n_gen=n_gen))
        assert not rec.get("error"), rec.get("error")
        _REF[key] = rec
    return _REF[key]


def _measure(benchmark, spec: RunSpec, ref: dict, machine_info: dict) -> dict:
    box = {}

    def once():
        box["rec"] = run(spec, ref["tokens_out"])

    benchmark.pedantic(once, rounds=1, iterations=1)
    rec = box["rec"]
    assert not rec.get("error"), rec["error"]
    assert rec["output_ok"], f"{spec.mode} x{spec.stages}: greedy output differs from iterative decoding"
    benchmark.extra_info.update(machine_info)
    for k in ("predicted_per_second", "ttft_decode_ms", "itl_ms_mean", "itl_ms_p99", "acceptance_rate",
              "runs_cancelled", "layers_skipped", "bytes_sent_per_token"):
        benchmark.extra_info[k] = rec.get(k)
    return rec


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stages", [1, 2])
def test_modes_tiny(benchmark, machine_info, tiny_gguf, stages, mode):
    n_gen = 24
    ref = _reference(tiny_gguf, "the cat sat on the mat", n_gen)
    truth = ref["prompt_tokens"] + ref["tokens_out"]
    spec = RunSpec(model=tiny_gguf, mode=mode, prompt="the cat sat on the mat", n_gen=n_gen, stages=stages, n_ctx=256,
                   draft=None if mode == "iterative" else {"kind": "replay", "truth": truth, "error_rate": 0.25, "seed": 1})
    benchmark.group = f"evaluation: tiny model, {stages} stage(s)"
    _measure(benchmark, spec, ref, machine_info)


@pytest.mark.realmodel
@pytest.mark.parametrize("error_rate", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_acceptance_smollm2(benchmark, machine_info, real_model, mode, error_rate):
    model = real_model("smollm2-135m")
    n_gen = 48
    ref = _reference(model, PAPER_PROMPT, n_gen)
    truth = ref["prompt_tokens"] + ref["tokens_out"]
    spec = RunSpec(model=model, mode=mode, prompt=PAPER_PROMPT, n_gen=n_gen, stages=2,
                   draft={"kind": "replay", "truth": truth, "error_rate": error_rate, "seed": 1})
    benchmark.group = "evaluation: smollm2-135m, 2 stages, oracle+noise"
    rec = _measure(benchmark, spec, ref, machine_info)
    benchmark.extra_info["iterative_per_second"] = ref["predicted_per_second"]
    if error_rate == 1.0:
        assert rec["draft_n_accepted"] == 0


def test_simulate_iterative(benchmark):
    from pipeinfer.evaluation.simulate import Link, SimConfig, StageCost, simulate

    cfg = SimConfig(stages=[StageCost(1e-3, 1e-4, 8)] * 8, link=Link(5e-5, 10e9), act_bytes_per_token=32768,
                    logits_bytes_per_row=128000, n_tokens=256)
    r = benchmark(simulate, cfg, "pipeinfer")
    assert len(r.token_times) == 256
    it = simulate(cfg, "iterative")
    hop = 5e-5 + 8 * 32768 / 10e9
    last = 5e-5 + 8 * 128000 / 10e9
    assert it.token_times[1] == pytest.approx(8 * 1.1e-3 + 7 * hop + last)
