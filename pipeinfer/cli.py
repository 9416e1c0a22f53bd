"""Command line: ``pipeinfer run | serve | pull | info | list | bench``.

Errors a user can cause (a bad file, a bad flag value, a missing model) print one line to stderr
and exit with status 2 (usage) or 1 (anything else); they never print a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

DEFAULT_MODEL = "smollm2-135m"


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="generate text from a prompt")
    p.add_argument("-m", "--model", default=DEFAULT_MODEL,
                   help=f"GGUF path or known model name (default: {DEFAULT_MODEL})")
    p.add_argument("-p", "--prompt", default=None, help="prompt text (default: read stdin)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message with the chat template")
    p.add_argument("--system", default=None, help="system message (with --chat)")
    p.add_argument("-n", "--max-tokens", type=int, default=128, help="tokens to generate (<= 0: to context end)")
    p.add_argument("-c", "--ctx", type=int, default=0, help="context length (0: min(trained, 4096))")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads per stage")
    p.add_argument("--batch", type=int, default=512, help="prompt-processing batch size")
    p.add_argument("--stages", type=int, default=1, help="pipeline stages (threads; under mpiexec: the ranks)")
    p.add_argument("--exact", action="store_true",
                   help="llama.cpp's exact arithmetic (bit-identical logits) instead of the faster default "
                        "row-interleaved weights (logits equal llama.cpp's up to float rounding)")
    p.add_argument("--kv-type", choices=["f16", "q8_0"], default="f16",
                   help="KV cache storage (f16: llama.cpp's default and arithmetic; q8_0: about half the memory)")
    p.add_argument("--context-shift", action="store_true",
                   help="when the context fills, drop the older half and go on (instead of stopping)")
    p.add_argument("--keep", type=int, default=0, help="tokens at the start a context shift keeps")
    p.add_argument("--draft", default=None,
                   help="drafter: a draft GGUF / known model name (same vocabulary), or 'ngram' (prompt lookup)")
    p.add_argument("--draft-ranks", type=int, choices=[0, 1], default=None,
                   help="1: the drafter on its own rank (under mpiexec: the last rank; else a thread); default: 1 with "
                        "a draft model and at least 3 ranks")
    p.add_argument("--mode", choices=["iterative", "speculative", "pipeinfer"], default=None,
                   help="decoding mode (default: pipeinfer with --draft, else iterative)")
    p.add_argument("--n-draft", type=int, default=8,
                   help="max draft tokens per speculative micro-batch (the policy chooses up to this)")
    p.add_argument("--p-accept", type=float, default=0.1, help="draft confidence below which a branch stops")
    p.add_argument("--p-split", type=float, default=0.8, help="draft confidence above which a branch forks")
    p.add_argument("--n-parallel", type=int, default=1, help="max branches per micro-batch (draft trees)")
    p.add_argument("--p-recovery", type=float, default=0.0, help="cutoff increase per micro-batch in a burst")
    p.add_argument("--p-decay", type=float, default=0.0, help="cutoff decrease per empty speculation attempt")
    p.add_argument("--max-in-flight", type=int, default=4,
                   help="max speculative micro-batches in flight (the policy chooses up to this)")
    p.add_argument("--no-adaptive", action="store_true", help="keep the draft length fixed")
    p.add_argument("--temp", type=float, default=0.8, help="temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--repeat-last-n", type=int, default=64)
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("--typical-p", type=float, default=1.0)
    p.add_argument("--min-tokens", type=int, default=0, help="end-of-generation is banned until this many tokens")
    p.add_argument("--ignore-eos", action="store_true", help="never stop at end-of-generation tokens")
    p.add_argument("--grammar-file", default=None, help="a GBNF or Lark grammar file the output must follow")
    p.add_argument("--json-schema", default=None, help="a JSON schema file the output must match (JSON mode)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--stats", action="store_true", help="print timings and counters to stderr at the end")
    p.add_argument("--json", action="store_true", help="print one JSON object (text, tokens, stats) instead of streaming")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run an evaluation experiment (JSON + CSV results, PNG plots)")
    p.add_argument("experiment", choices=["modes", "acceptance", "links", "simulate", "cluster", "report"],
                   help="modes | acceptance | links | simulate | cluster (an emulated CPU cluster: root), or report "
                        "(docs/results.md from the results in --out)")
    p.add_argument("--out", default="bench-results", help="folder for results and plots (default: bench-results)")
    p.add_argument("--quick", action="store_true", help="short runs, fewer configurations (a few minutes)")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks of the MPI configurations (0: none)")
    p.add_argument("-m", "--model", default=None, help="target GGUF path or known name (default: the paper-like cases)")
    p.add_argument("--draft", default=None, help="with --model: draft GGUF path / known name, or 'ngram' (default)")
    p.add_argument("-n", "--n-gen", type=int, default=None, help="tokens per run (default 24 with --quick, else 64)")
    p.add_argument("-t", "--threads", type=int, default=1, help="threads per stage (default 1)")
    p.add_argument("--no-plots", action="store_true", help="write JSON/CSV only")
    p.add_argument("--docs", default="docs", help="report: folder receiving results.md and results/*.png")
    c = p.add_argument_group("cluster", "the emulated cluster (every MPI rank in a CPU cgroup with a quota)")
    c.add_argument("--stages", type=int, default=4, help="target pipeline stages (default 4)")
    c.add_argument("--draft-ranks", type=int, choices=[0, 1], default=1, help="a dedicated draft rank (default 1)")
    c.add_argument("--quota", type=float, default=0.45, help="CPUs per rank (default 0.45)")
    c.add_argument("--quotas", default=None, help="CPUs of each rank, comma separated (heterogeneous nodes)")
    c.add_argument("--period-us", type=int, default=10000, help="CFS period of the quotas (default 10000)")
    c.add_argument("--drafter", default="oracle",
                   help="oracle (the target's own text corrupted at each --errors rate), synthetic:RATIO (the same at "
                        "the cost of a draft model RATIO times smaller), ngram, or a draft model (default: oracle)")
    c.add_argument("--errors", default="0,0.1,0.3,0.5,1", help="error rates of the oracle/synthetic drafter")
    c.add_argument("--modes", default="iterative,speculative,pipeinfer", help="modes, comma separated")
    c.add_argument("--repeats", type=int, default=1, help="interleaved sweeps, for the spread (default 1)")
    c.add_argument("--policy", default="", help="SpeculationPolicy fields, e.g. n_draft=4,adaptive=false")
    c.add_argument("--link-latency-ms", type=float, default=0.0, help="emulated one-way link latency between ranks")
    c.add_argument("--link-gbps", type=float, default=0.0, help="emulated link bandwidth (0: unlimited)")
    c.add_argument("--tag", default=None, help="result name: cluster-TAG.json (default from stages and drafter)")
    c.add_argument("--no-trace", action="store_true", help="no timelines (and no simulator validation)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeinfer", description="GGUF inference with pipelined speculative decoding")
    from pipeinfer import __version__

    parser.add_argument("--version", action="version", version=f"pipeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_bench(sub)
    from pipeinfer.server.main import add_parser as _add_serve

    _add_serve(sub, DEFAULT_MODEL)
    p = sub.add_parser("pull", help="fetch a known model into the cache")
    p.add_argument("name", help="model name (see `pipeinfer list`) or an https URL of a GGUF file")
    p = sub.add_parser("info", help="print a GGUF file's metadata and tensor table")
    p.add_argument("file", help="GGUF path or known model name")
    p.add_argument("--max-array", type=int, default=8, help="array elements shown per key")
    sub.add_parser("list", help="list the known models and whether they are cached")
    return parser


def _cmd_run(a: argparse.Namespace) -> int:
    from pipeinfer.pipeline import Pipeline

    prompt = a.prompt if a.prompt is not None else sys.stdin.read()
    from pipeinfer.speculation import SpeculationPolicy

    policy = SpeculationPolicy(n_draft=a.n_draft, p_accept=a.p_accept, p_split=a.p_split, n_parallel=a.n_parallel,
                               p_recovery=a.p_recovery, p_decay=a.p_decay, max_in_flight=a.max_in_flight,
                               adaptive=not a.no_adaptive)
    pipe = Pipeline(a.model, n_ctx=a.ctx, n_threads=a.threads, n_batch=a.batch, stages=a.stages, draft=a.draft,
                    mode=a.mode, speculation=policy, exact=a.exact, kv_type=a.kv_type,
                    context_shift=a.context_shift, n_keep=a.keep, draft_ranks=a.draft_ranks)
    if not pipe.is_head:
        return 0  # an MPI worker rank: it served its stage until the head closed the pipeline
    sampling = dict(temperature=a.temp, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                    repeat_penalty=a.repeat_penalty, repeat_last_n=a.repeat_last_n,
                    presence_penalty=a.presence_penalty, frequency_penalty=a.frequency_penalty,
                    seed=a.seed, stop=a.stop, typical_p=a.typical_p, min_tokens=a.min_tokens,
                    ignore_eos=a.ignore_eos)
    structured: Dict[str, Any] = {}
    if a.grammar_file:
        structured["grammar"] = Path(a.grammar_file).read_text(encoding="utf-8")
    if a.json_schema:
        schema = json.loads(Path(a.json_schema).read_text(encoding="utf-8"))
        structured["response_format"] = {"type": "json_schema", "json_schema": {"name": "cli", "schema": schema}}
    parse_special = False
    if a.chat:
        messages = ([{"role": "system", "content": a.system}] if a.system else []) + [{"role": "user", "content": prompt}]
        prompt = pipe.render_chat(messages)
        parse_special = True
    stream = pipe.stream(prompt, max_tokens=a.max_tokens, parse_special=parse_special, **sampling, **structured)
    if a.json:
        for _ in stream:
            pass
        print(json.dumps({"text": stream.text, "tokens": stream.tokens, "finish_reason": stream.finish_reason,
                          "timings": stream.timings.as_dict(), "metrics": stream.metrics(),
                          "stages": stream.stage_stats}))
        pipe.close()
        return 0
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if a.stats:
        for k, v in stream.metrics().items():
            print(f"[stats] {k}: {v:.3f}" if isinstance(v, float) else f"[stats] {k}: {v}", file=sys.stderr)
        for i, st in enumerate(stream.stage_stats):
            print(f"[stats] stage {i}: layers {st['layer_begin']}-{st['layer_end']}, runs {st['runs']}, "
                  f"skipped runs {st['runs_skipped']}, skipped layers {st['layers_skipped']}, "
                  f"busy {st['busy_s']:.3f} s, idle {st['idle_s']:.3f} s, sent {st['bytes_sent']} B", file=sys.stderr)
    pipe.close()
    return 0


def _cmd_pull(a: argparse.Namespace) -> int:
    from pipeinfer import models

    print(models.pull(a.name))
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from pipeinfer import models
    from pipeinfer.gguf_info import format_info

    print(format_info(str(models.resolve(a.file)), max_array=a.max_array))
    return 0


def _cmd_list(a: argparse.Namespace) -> int:
    from pipeinfer import models

    print(models.catalog_table())
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from pipeinfer import evaluation

    if a.experiment == "cluster":
        from pipeinfer.evaluation.cluster import ClusterSettings, run_cluster

        cluster = ClusterSettings(
            stages=a.stages, draft_ranks=a.draft_ranks, quota=a.quota,
            quotas=[float(x) for x in a.quotas.split(",")] if a.quotas else None, period_us=a.period_us,
            model=a.model or "qwen2.5-coder-0.5b", drafter=a.drafter,
            errors=[float(x) for x in a.errors.split(",") if x], modes=[m for m in a.modes.split(",") if m],
            n_gen=a.n_gen or 64, repeats=a.repeats, policy=_policy_fields(a.policy), trace=not a.no_trace,
            link_latency_s=a.link_latency_ms / 1e3, link_bps=a.link_gbps * 1e9, out=Path(a.out), tag=a.tag,
            plots=not a.no_plots, n_threads=a.threads)
        run_cluster(cluster)
        return 0
    if a.experiment == "report":
        from pipeinfer.evaluation import report

        print(report.write_report(Path(a.out), Path(a.docs)))
        return 0
    st = evaluation.Settings(out=Path(a.out), quick=a.quick, ranks=a.ranks, model=a.model, draft=a.draft,
                             n_gen=a.n_gen, n_threads=a.threads, plots=not a.no_plots)
    evaluation.run_experiment(a.experiment, st)
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from pipeinfer.server.main import run

    return run(a)


def _show_engine_messages() -> None:
    """The engine's progress messages (a first, repacking, load) on stderr."""
    import logging

    logger = logging.getLogger("pipeinfer")
    if any(getattr(h, "_pipeinfer_cli", False) for h in logger.handlers):
        return  # main() called again in this process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pipeinfer: %(message)s"))
    handler._pipeinfer_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _policy_fields(text: str) -> dict:
    """'n_draft=4,adaptive=false' -> {'n_draft': 4, 'adaptive': False}."""
    out: dict = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        if "=" not in item:
            raise ValueError(f"--policy: expected key=value, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        low = v.lower()
        if low in ("true", "false"):
            out[k] = low == "true"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    raise ValueError(f"--policy: {k}={v!r} is not a number or true/false") from None
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _show_engine_messages()
    handlers = {"run": _cmd_run, "pull": _cmd_pull, "info": _cmd_info, "list": _cmd_list,
                "bench": _cmd_bench, "serve": _cmd_serve}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("pipeinfer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        print(f"pipeinfer {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
