"""The public engine object: ``pipeinfer.Pipeline``.

A thin layer over the native ``_core.Pipeline``: it owns the tokenizer, the prompt cache (which tokens
the KV cache already holds), and the token loop that calls the native decode and the Python sampler.
Per generated token only the token id crosses into C++ and one logits row comes back.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from pipeinfer import _core, launch
from pipeinfer.batching.slots import Slot, close_slots, common_prefix, layout, make_slots
from pipeinfer.chat import BUILTIN_TEMPLATES, builtin_template, render_chat
from pipeinfer.config import EngineConfig, layer_counts, shifted_context
from pipeinfer.drafters import Drafter, make_drafter
from pipeinfer.drafters.remote import DraftServer, RemoteDrafter
from pipeinfer.guard import UseGuard
from pipeinfer.models import resolve
from pipeinfer.sampling import SamplingParams, make_sampler
from pipeinfer.speculation import DECODERS, DecodeStats, Session, SpeculationPolicy
from pipeinfer.stopping import StopMatcher
from pipeinfer.tokenizer import Tokenizer

Prompt = Union[str, Sequence[int]]


@dataclass
class Timings:
    """Per-generation timings, with llama.cpp's field names where one exists."""

    prompt_n: int = 0  # prompt tokens evaluated (cached prefix excluded)
    prompt_ms: float = 0.0  # prefill wall time
    predicted_n: int = 0  # tokens generated
    predicted_ms: float = 0.0  # wall time from the end of prefill to the last token
    ttft_ms: float = 0.0  # request start to first generated token, prefill included
    cached_n: int = 0  # prompt tokens reused from the previous request's KV cache
    itl_ms: List[float] = field(default_factory=list)  # gaps between consecutive generated tokens

    @property
    def prompt_per_second(self) -> float:
        return 1e3 * self.prompt_n / self.prompt_ms if self.prompt_ms > 0 else 0.0

    @property
    def predicted_per_second(self) -> float:
        return 1e3 * self.predicted_n / self.predicted_ms if self.predicted_ms > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        itl = np.asarray(self.itl_ms) if self.itl_ms else np.zeros(1)
        return {
            "prompt_n": self.prompt_n,
            "prompt_ms": self.prompt_ms,
            "prompt_per_second": self.prompt_per_second,
            "predicted_n": self.predicted_n,
            "predicted_ms": self.predicted_ms,
            "predicted_per_second": self.predicted_per_second,
            "ttft_ms": self.ttft_ms,
            "ttft_no_prefill_ms": max(0.0, self.ttft_ms - self.prompt_ms),
            "cached_n": self.cached_n,
            "itl_ms_mean": float(itl.mean()),
            "itl_ms_p50": float(np.percentile(itl, 50)),
            "itl_ms_p99": float(np.percentile(itl, 99)),
        }


class Stream:
    """Iterator over the text pieces of one generation, as they are produced.

    While and after iterating, ``tokens`` holds the generated token ids, ``text`` the text so far,
    ``finish_reason`` is ``"stop"`` or ``"length"`` once finished, ``timings`` the measurements and
    ``stats`` the speculation counters; :meth:`metrics` gathers everything in one dict.
    """

    def __init__(self, pipeline: "Pipeline", prompt_ids: List[int], params: SamplingParams, max_tokens: Optional[int]):
        self.prompt_tokens: List[int] = list(prompt_ids)
        self.tokens: List[int] = []
        self.mode: str = pipeline.mode
        self.stats = DecodeStats()
        self.text: str = ""
        self.finish_reason: Optional[str] = None
        self.timings = Timings()
        self.stage_stats: List[Dict[str, Any]] = []  # per stage, counted over this generation only
        self.trace: Optional[list] = [] if getattr(pipeline, "_trace", False) else None  # head events
        self._guard: Optional[UseGuard] = pipeline._guard
        self._slot = -1  # the Pipeline slot this generation holds, from its first token
        self._prefix_score = lambda k: common_prefix(pipeline._slots[k].cached, prompt_ids)
        self._started = False
        self._cancel = threading.Event()
        self._it = self._guarded(pipeline._run(self, prompt_ids, params, max_tokens))

    def _guarded(self, it: Iterator[str]) -> Iterator[str]:
        try:
            yield from it
        finally:
            if self._guard is not None:
                self._guard.release(self)

    def metrics(self) -> Dict[str, Any]:
        """Everything measured for this generation, in one flat dict.

        Timings use llama.cpp's names (prompt_ms, predicted_per_second, ...) plus ttft_ms (request
        start to first token, prefill included), ttft_no_prefill_ms, and itl_ms mean/p50/p99. Speculation:
        draft_n, draft_n_accepted, acceptance_rate, mean_accepted_length (tokens per verified
        speculative run), runs_launched, runs_cancelled. Pipeline: layers_skipped and runs_skipped per
        stage, and bytes_sent_per_token (all stages, per generated token).
        """
        m: Dict[str, Any] = {"mode": self.mode, "tokens": len(self.tokens), "finish_reason": self.finish_reason}
        m.update(self.timings.as_dict())
        m.update(self.stats.as_dict())
        if self.stage_stats:
            m["layers_skipped"] = [st["layers_skipped"] for st in self.stage_stats]
            m["runs_skipped"] = [st["runs_skipped"] for st in self.stage_stats]
            sent = sum(st["bytes_sent"] for st in self.stage_stats)
            m["bytes_sent_per_token"] = sent / max(1, len(self.tokens))
            m["stage_busy_s"] = [st["busy_s"] for st in self.stage_stats]
            m["stage_idle_s"] = [st["idle_s"] for st in self.stage_stats]
        return m

    @classmethod
    def empty(cls) -> "Stream":
        """A finished stream with no output (what a non-head MPI rank gets)."""
        s = cls.__new__(cls)
        s.prompt_tokens, s.tokens, s.text, s.finish_reason, s.timings = [], [], "", "worker", Timings()
        s.mode, s.stats, s.stage_stats, s.trace = "worker", DecodeStats(), [], None
        s._guard, s._started, s._cancel, s._it = None, True, threading.Event(), iter(())
        return s

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        if not self._started:
            # the pipeline is taken at the first token and freed when the generation ends or is closed
            if self._guard is not None:
                self._slot = self._guard.acquire(self, "start a stream", score=self._prefix_score)
            self._started = True
        return next(self._it)

    def cancel(self) -> None:
        """Asks the generation to stop at its next token (from any thread; ``close`` must be called
        from the thread iterating). The stream then ends with finish_reason ``"cancelled"``."""
        self._cancel.set()

    def close(self) -> None:
        """Stops the generation (cancelling what is in flight) and frees the pipeline."""
        self._started = True  # a stream closed before its first token never takes the pipeline
        self._it.close()


_SAMPLING_KEYS = {
    "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n", "presence_penalty",
    "frequency_penalty", "logit_bias", "seed", "stop",
}  # fmt: skip


class Pipeline:
    """A GGUF model ready to generate text.

    Args:
        model: a path to a GGUF file, or the name of a known model (see ``pipeinfer.models``), which is
            fetched into the cache on first use.
        n_ctx: context length (KV cells); 0 uses min(the model's trained context, 4096).
        n_threads: compute threads per stage (default: all CPUs available).
        n_batch: maximum tokens per prompt-processing step.
        stages: number of pipeline stages run as threads of this process (local transport); under
            mpiexec the number of ranks decides instead.
        layer_split: layers per stage, as counts or as fractions summing to 1 (the reference's
            ``--mpi-layer-split 0.1,0.9``); None splits by weight bytes.
        transport: "auto" (MPI when started by mpiexec, else local), "local" or "mpi".
        act_f16: send activations between stages as f16 (half the bytes; tiny rounding).
        dead_after_s: a worker silent for this long is declared dead (TransportError).
        exact: llama.cpp's exact arithmetic (logits equal llama.cpp's bit for bit) instead of the
            default fast layout (row-interleaved weights; logits equal llama.cpp's up to float rounding).
            Greedy speculative output equals greedy plain output in both (``EngineConfig.exact``).
        repack_cache: where the fast layout's weights are cached between loads (``EngineConfig.repack_cache``).
        kv_type: KV cache storage, "f16" (default, llama.cpp-identical) or "q8_0" (smaller).
        context_shift: when a generation fills the context, drop the older half (after the first
            ``n_keep`` tokens) and go on instead of stopping with finish_reason "length".
        seed: default sampling seed for requests that give none.
        draft: the drafter for speculation: a draft GGUF path or known model name (same vocabulary as
            the target), ``"ngram"`` (prompt lookup, no model), a ``pipeinfer.drafters.Drafter``, or a
            callable ``tokens -> draft ids``. None: no speculation.
        mode: ``"iterative"`` (one token in flight), ``"speculative"`` (draft, verify, repeat) or
            ``"pipeinfer"`` (asynchronous continuous speculation; the default when a drafter is given).
        speculation: the speculation policy (``pipeinfer.SpeculationPolicy``: n_draft, p_accept,
            p_split, n_parallel, p_recovery, p_decay, max_in_flight).
        draft_ranks: 1 runs the drafter on its own rank (the paper's topology; locally its own thread):
            it drafts ahead continuously while the head works and streams its drafts; 0 drafts on the
            head. None (default): 1 when `draft` names a draft model and there are at least 3 ranks
            (under mpiexec: the world size; locally: stages + 1), else 0. Under mpiexec the draft rank
            is the last rank, and the target stages are the others. A draft rank serves one generation
            at a time (parallel=1).
        trace: record timelines: every stage's run spans (``Stream.stage_stats[i]["spans"]``) and the
            head's launches, results, cancellations and accepted tokens (``Stream.trace``), on the
            monotonic clock of ``time.perf_counter``.

    Under ``mpiexec -n N`` every rank runs the same code: rank 0 is the head and generates; the
    constructor of any other rank serves that rank's pipeline stage and returns once the head closes
    the pipeline (``is_head`` is False there, and ``stream`` yields nothing).

    Example:
        >>> pipe = pipeinfer.Pipeline("smollm2-135m")
        >>> for piece in pipe.stream("The capital of France is", max_tokens=16):
        ...     print(piece, end="")
    """

    @launch.reports_startup_failure
    def __init__(
        self,
        model: Union[str, Path],
        *,
        n_ctx: int = 0,
        n_threads: Optional[int] = None,
        n_batch: int = 512,
        stages: int = 1,
        layer_split: Optional[Sequence[Union[int, float]]] = None,
        transport: str = "auto",
        act_f16: bool = False,
        dead_after_s: float = 10.0,
        exact: bool = False,
        repack_cache: Union[bool, str, "os.PathLike[str]"] = True,
        kv_type: str = "f16",
        context_shift: bool = False,
        n_keep: int = 0,
        seed: Optional[int] = None,
        draft: Any = None,
        mode: Optional[str] = None,
        speculation: Optional[SpeculationPolicy] = None,
        draft_ranks: Optional[int] = None,
        trace: bool = False,
        parallel: int = 1,
    ) -> None:
        self.config = EngineConfig(n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, stages=stages,
                                   layer_split=layer_split, transport=transport, act_f16=act_f16,
                                   dead_after_s=dead_after_s, exact=exact,
                                   repack_cache=repack_cache, kv_type=kv_type,
                                   context_shift=context_shift, n_keep=n_keep)
        self.model_path = Path(resolve(str(model)))
        self.default_seed = seed
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 256:
            raise ValueError(f"parallel must be an integer in [1, 256], got {parallel!r}")
        self.parallel = parallel
        self._guard = UseGuard(parallel)  # a slot per generation (pipeinfer/guard.py)
        self._batcher = None  # parallel > 1: the thread merging the slots' runs (pipeinfer/batching)
        self._slots: List[Slot] = []
        self._layout = None
        kind = launch.resolve_transport(self.config.transport)
        self.rank = launch.mpi_rank() if kind == "mpi" else 0
        self.is_head = self.rank == 0
        self._draft_thread: Optional[threading.Thread] = None
        world = launch.mpi_size() if kind == "mpi" else self.config.stages + 1
        self.draft_ranks = _draft_ranks(draft_ranks, draft, world, mode, parallel)
        if not self.is_head:
            self._native = None
            if self.draft_ranks and self.rank == world - 1:
                self._serve_draft_rank(draft, speculation)  # the draft rank: draft until the head closes
            else:
                # An MPI worker rank: serve this rank's stage until the head closes the pipeline.
                _core.serve_mpi_worker(str(self.model_path), heartbeat_s=self.config.heartbeat_s,
                                       dead_after_s=self.config.dead_after_s,
                                       repack_cache_dir=self.config.repack_cache_dir())
            return
        self._gguf = _core.GGUFFile(str(self.model_path))
        self.metadata: Dict[str, Any] = self._gguf.metadata()
        self.tokenizer = Tokenizer.from_metadata(self.metadata)
        self.mode = mode or ("pipeinfer" if draft is not None else "iterative")
        if self.mode not in ("iterative", "speculative", "pipeinfer"):
            raise ValueError(f"mode must be 'iterative', 'speculative' or 'pipeinfer', got {self.mode!r}")
        if self.mode != "iterative" and draft is None:
            raise ValueError(f"mode {self.mode!r} needs a drafter (draft=...)")
        self.policy = speculation if speculation is not None else SpeculationPolicy()
        if not isinstance(self.policy, SpeculationPolicy):
            raise ValueError(f"speculation must be a SpeculationPolicy, got {type(self.policy).__name__}")
        local_drafter: Optional[Drafter] = None
        if self.mode != "iterative" and not (self.draft_ranks and kind == "mpi"):
            local_drafter = make_drafter(draft, target_meta=self.metadata, model_options={"exact": self.config.exact})
        self.drafter: Optional[Drafter] = local_drafter
        n_buffers = {"iterative": 0, "speculative": 1, "pipeinfer": self.policy.n_buffers}[self.mode]
        n_ctx_native = self.config.n_ctx
        if parallel > 1:
            self._layout = layout(parallel, self.config.n_ctx, self._n_ctx_train(), n_buffers, self.policy.n_draft)
            n_ctx_native = self._layout.n_ctx_native
        self._native = _core.Pipeline(
            str(self.model_path), n_ctx=n_ctx_native, n_threads=self.config.n_threads, n_seq_max=1,
            n_stages=self.config.stages, stage_layers=self._stage_layers(), transport=kind,
            act_f16=self.config.act_f16, heartbeat_s=self.config.heartbeat_s,
            dead_after_s=self.config.dead_after_s, n_spec_buffers=n_buffers,
            n_spec_branches=self.policy.n_parallel, repack=not self.config.exact, trace=bool(trace),
            repack_cache_dir=self.config.repack_cache_dir(), n_slots=parallel, draft_ranks=self.draft_ranks,
            kv_type=self.config.kv_type,
        )
        self._trace = bool(trace)
        if self.draft_ranks:
            if kind == "local":
                assert local_drafter is not None
                server = DraftServer(self._native.local_draft_link(), local_drafter)
                self._draft_thread = threading.Thread(target=_serve_quietly, args=(server,), name="pipeinfer-draft",
                                                      daemon=True)
                self._draft_thread.start()
            ahead = self.policy.n_draft * (self.policy.max_in_flight if self.mode == "pipeinfer" else 1)
            self.drafter = RemoteDrafter(self._native, ahead=ahead, p_min=self.policy.p_accept,
                                         n_vocab=getattr(local_drafter, "n_vocab", None))
        if parallel == 1:
            self._slots = [Slot(0, self._native, self.drafter, self.policy)]
        else:
            drafters = iter([self.drafter])

            def slot_drafter() -> Optional[Drafter]:
                if self.mode == "iterative":
                    return None
                return next(drafters, None) or make_drafter(draft, target_meta=self.metadata,
                                                            model_options={"exact": self.config.exact})

            self._batcher, self._slots = make_slots(self._native, self._layout, n_buffers, self.policy.n_parallel,
                                                    self.policy, slot_drafter, self.config.n_batch)
        if self.tokenizer.n_vocab > self._native.n_vocab:
            raise _core.ModelError(
                f"{self.model_path}: the tokenizer has {self.tokenizer.n_vocab} tokens but the model's "
                f"embedding has {self._native.n_vocab} rows"
            )

    def _n_ctx_train(self) -> int:
        arch = self.metadata.get("general.architecture")
        n = self.metadata.get(f"{arch}.context_length")
        return n if isinstance(n, int) and n > 0 else 4096

    def _serve_draft_rank(self, draft: Any, speculation: Optional[SpeculationPolicy]) -> None:
        """This MPI rank is the draft rank: build the drafter, join, say ready, draft until told to stop."""
        meta = _core.GGUFFile(str(self.model_path)).metadata()
        try:
            drafter = make_drafter(draft, target_meta=meta, model_options={"exact": self.config.exact})
        except Exception as e:
            link = _core.DraftLink.mpi(heartbeat_s=self.config.heartbeat_s, dead_after_s=self.config.dead_after_s)
            link.error("invalid" if isinstance(e, ValueError) else "other", f"draft rank: {type(e).__name__}: {e}")
            raise
        link = _core.DraftLink.mpi(heartbeat_s=self.config.heartbeat_s, dead_after_s=self.config.dead_after_s)
        link.ready()
        DraftServer(link, drafter).serve()

    def _stage_layers(self) -> List[int]:
        if not self.config.layer_split:
            return []
        arch = self.metadata.get("general.architecture")
        n_layer = self.metadata.get(f"{arch}.block_count")
        if not isinstance(n_layer, int):
            raise _core.ModelError(f"{self.model_path}: key '{arch}.block_count' is missing")
        return layer_counts(self.config.layer_split, n_layer)

    # ----------------------------------------------------------------------------------- properties
    @property
    def n_ctx(self) -> int:
        """Context length of one generation (with parallel slots: each slot's share)."""
        return self._layout.n_ctx_slot if self._layout is not None else self._native.n_ctx

    @property
    def n_vocab(self) -> int:
        return self._native.n_vocab

    @property
    def chat_template(self) -> Optional[str]:
        """The file's chat template, or for a file without one the built-in format of the model's
        family (pipeinfer.chat.builtin_template: gemma, llama3, phi3, mistral or ChatML)."""
        tpl = self.metadata.get("tokenizer.chat_template")
        if isinstance(tpl, str) and tpl:
            return tpl
        name = builtin_template(self.metadata.get("general.architecture"), self.metadata.get("tokenizer.ggml.tokens"))
        return BUILTIN_TEMPLATES[name]

    def stage_stats(self) -> List[Dict[str, Any]]:
        """Per-stage counters: runs, runs skipped, tokens, layers run and skipped, bytes and messages
        sent, busy and idle seconds, KV cells used, weight bytes."""
        if self._batcher is not None:  # between the batches of running generations
            return self._batcher.call(-1, lambda native: native.stats())
        with self._guard.held("read the stage counters"):
            return self._native.stats()

    # ----------------------------------------------------------------------------------- tokens
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]:
        """Text to token ids, as llama.cpp's ``llama_tokenize``."""
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int], skip_special: bool = False) -> str:
        return self.tokenizer.decode(list(tokens), skip_special=skip_special)

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits (len(tokens), n_vocab) of every position of a fresh sequence, in one batch.

        Clears the prompt cache. Meant for tests and analysis, not for generation.
        """
        ids = self._check_tokens(tokens)
        with self._guard.held("evaluate logits"):
            self._reset()
            n = len(ids)
            out = self._eval(self._slots[0], ids, 0, np.ones(n, np.uint8), exact=self._batcher is not None).copy()
            self._reset()
        return out

    def reset(self) -> None:
        """Forgets the prompt cache (clears every KV cell)."""
        with self._guard.held("reset the prompt cache"):
            self._reset()

    def _reset(self) -> None:
        for slot in self._slots:
            self._target(slot).kv_clear()
            slot.cached = []

    # ----------------------------------------------------------------------------------- generation
    def stream(self, prompt: Prompt, *, max_tokens: Optional[int] = 16, add_special: bool = True,
               parse_special: bool = False, **sampling: Any) -> Stream:
        """Generates from ``prompt``, yielding text pieces as they are produced.

        Args:
            prompt: text, or a list of token ids.
            max_tokens: tokens to generate at most; None, 0 or -1 run to the end of the context.
            add_special: add BOS/EOS as the model's tokenizer asks (text prompts only).
            parse_special: recognise special-token text such as ``<|im_start|>`` in the prompt.
            **sampling: fields of :class:`pipeinfer.sampling.SamplingParams` (temperature, top_k,
                top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty, logit_bias, seed, stop).

        Returns:
            A :class:`Stream` (iterate it for text; ``.tokens``, ``.timings`` and ``.finish_reason``
            are filled as it goes).
        """
        if not self.is_head:
            return Stream.empty()
        if self._native is None:
            raise RuntimeError("the pipeline is closed")
        unknown = set(sampling) - _SAMPLING_KEYS
        if unknown:
            raise TypeError(f"unknown sampling argument(s): {', '.join(sorted(unknown))}")
        if sampling.get("seed") is None and self.default_seed is not None:
            sampling["seed"] = self.default_seed
        params = SamplingParams(**sampling)
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < -1):
            raise ValueError(f"max_tokens must be an integer >= -1 or None (None, 0 and -1: to the end of the "
                             f"context), got {max_tokens!r}")
        if isinstance(prompt, str):
            try:
                prompt.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"the prompt is not valid Unicode text: {e.reason} at character {e.start}") from None
            ids = self.tokenize(prompt, add_special=add_special, parse_special=parse_special)
        else:
            ids = list(prompt)
        ids = self._check_tokens(ids)
        if len(ids) >= self.n_ctx:
            raise ValueError(
                f"prompt has {len(ids)} tokens but the context holds {self.n_ctx} (n_ctx); at least one "
                "cell must remain for generation"
            )
        return Stream(self, ids, params, None if max_tokens is None or max_tokens <= 0 else max_tokens)

    def generate(self, prompt: Prompt, **kwargs: Any) -> Stream:
        """Runs :meth:`stream` to completion and returns the finished Stream (``.text``, ``.tokens``)."""
        s = self.stream(prompt, **kwargs)
        for _ in s:
            pass
        return s

    def create_completion(self, prompt: Prompt, max_tokens: Optional[int] = 16, stream: bool = False,
                          **kwargs: Any) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """OpenAI / llama-cpp-python shaped completion (a dict, or an iterator of chunks if stream)."""
        s = self.stream(prompt, max_tokens=max_tokens, **kwargs)
        created = int(time.time())
        cid = f"cmpl-{created}-{id(s):x}"
        model = self.model_path.name
        if stream:
            return _completion_chunks(s, cid, created, model)
        for _ in s:
            pass
        return _completion_response(s, cid, created, model)

    __call__ = create_completion

    def create_chat_completion(self, messages: List[Mapping[str, Any]], max_tokens: Optional[int] = None,
                               stream: bool = False, **kwargs: Any) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """OpenAI-shaped chat completion; the prompt is rendered with the GGUF's chat template."""
        prompt = self.render_chat(messages)
        s = self.stream(prompt, max_tokens=max_tokens, add_special=True, parse_special=True, **kwargs)
        created = int(time.time())
        cid = f"chatcmpl-{created}-{id(s):x}"
        model = self.model_path.name
        if stream:
            return _chat_chunks(s, cid, created, model)
        for _ in s:
            pass
        return _chat_response(s, cid, created, model)

    def render_chat(self, messages: List[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, from the model's chat template (ChatML if none)."""
        tok = self.tokenizer
        bos = tok.token_to_piece(tok.bos_id).decode("utf-8", "replace") if tok.bos_id is not None else ""
        eos = tok.token_to_piece(tok.eos_id).decode("utf-8", "replace") if tok.eos_id is not None else ""
        text = render_chat(self.chat_template, list(messages), add_generation_prompt=add_generation_prompt,
                           bos_token=bos, eos_token=eos)
        # The template writes BOS itself when the model wants one; tokenizing adds another otherwise.
        if bos and tok.add_bos and text.startswith(bos):
            text = text[len(bos):]
        return text

    def close(self) -> None:
        """Shuts the worker stages (and the draft rank) down and releases the native pipeline and
        drafter (idempotent).

        An unfinished stream of this thread is closed first; one of another thread is waited for.
        """
        for owner in self._guard.owned_here():
            if isinstance(owner, Stream):
                owner.close()
        with self._guard.held("close the pipeline"):
            close_slots(self._batcher, self._slots)  # the slots' drafters too
            self._batcher, self._slots = None, []
            if self._native is not None:
                self._native.close()
            self._native = None
            if getattr(self, "_draft_thread", None) is not None:
                self._draft_thread.join(timeout=30)
                self._draft_thread = None
            if getattr(self, "drafter", None) is not None:
                self.drafter.close()
                self.drafter = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- internals
    def _check_tokens(self, tokens: Sequence[int]) -> List[int]:
        ids = [int(t) for t in tokens]
        if not ids:
            raise ValueError("the prompt is empty (no tokens); give text or at least one token id")
        bad = [t for t in ids if t < 0 or t >= self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of the vocabulary [0, {self.n_vocab})")
        return ids

    def _target(self, slot: Slot) -> Any:
        """The slot's Target: the native pipeline itself when there is one slot."""
        return self._native if self._batcher is None else slot.target

    def _eval(self, slot: Slot, tokens: Sequence[int], pos0: int, want: np.ndarray, exact: bool) -> np.ndarray:
        """Runs one batch of a slot's canonical sequence and returns the rows asked for."""
        n = len(tokens)
        args = (np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32), np.zeros(n, np.int32), want)
        if self._batcher is None:
            return self._native.decode(*args)
        # with several slots every row is exact, so a prompt gives the same logits whatever it is batched
        # with and however much of it was cached
        self._target(slot).submit(*args, exact_rows=exact)
        _, skipped, rows = self._target(slot).wait()
        if skipped:
            raise RuntimeError("the run was cancelled")
        return rows

    def _prefill(self, slot: Slot, ids: List[int]) -> "tuple[np.ndarray, int]":
        """Brings the slot's KV cache to hold ``ids``, reusing the prefix it already holds.

        Returns the logits of the last prompt token and how many prompt tokens were reused.
        """
        common = min(common_prefix(slot.cached, ids), len(ids) - 1)  # the last prompt token gives the logits
        self._target(slot).kv_seq_rm(0, common, -1)
        slot.cached = list(ids[:common])
        logits = None
        nb = self.config.n_batch
        for start in range(common, len(ids), nb):
            chunk = ids[start:start + nb]
            want = np.zeros(len(chunk), np.uint8)
            if start + nb >= len(ids):
                want[-1] = 1
            out = self._eval(slot, chunk, start, want, exact=self._batcher is not None)
            slot.cached.extend(chunk)
            if want[-1]:
                logits = out[-1]
        assert logits is not None
        return logits, common

    def _run(self, s: Stream, ids: List[int], params: SamplingParams, max_tokens: Optional[int]) -> Iterator[str]:
        slot = self._slots[s._slot]
        if self._batcher is None:
            yield from self._generate(s, slot, ids, params, max_tokens)
            return
        self._batcher.begin(slot.index)
        try:
            yield from self._generate(s, slot, ids, params, max_tokens)
        finally:
            self._batcher.end(slot.index)

    def _generate(self, s: Stream, slot: Slot, ids: List[int], params: SamplingParams,
                  max_tokens: Optional[int]) -> Iterator[str]:
        # per-generation stage counters only when the generation has the pipeline to itself
        before = self._native.stats() if self._batcher is None else None
        t0 = time.perf_counter()
        sampler = make_sampler(params)
        stop = StopMatcher(list(params.stop or []))
        detok = self.tokenizer.stream_decoder()
        try:
            logits, reused = self._prefill(slot, ids)
        except BaseException:
            self._target(slot).kv_clear()
            slot.cached = []
            raise
        t_prefill = time.perf_counter()
        s.timings.prompt_n = len(ids) - reused
        s.timings.cached_n = reused
        s.timings.prompt_ms = 1e3 * (t_prefill - t0)
        gen = list(ids)
        tokens = self._decoded(s, slot, sampler, gen, logits.copy())
        limit = self.n_ctx - len(ids) if not self.config.context_shift else float("inf")
        if max_tokens is not None:
            limit = min(limit, max_tokens)
        t_last = t_prefill
        try:
            for tok in tokens:
                if s._cancel.is_set():
                    s.finish_reason = "cancelled"
                    break
                now = time.perf_counter()
                if not s.tokens:
                    s.timings.ttft_ms = 1e3 * (now - t0)
                else:
                    s.timings.itl_ms.append(1e3 * (now - t_last))
                t_last = now
                if self.tokenizer.is_eog(tok):
                    s.finish_reason = "stop"
                    break
                s.tokens.append(tok)
                s.timings.predicted_n = len(s.tokens)
                s.timings.predicted_ms = 1e3 * (now - t_prefill)
                piece, stopped = stop.feed(detok.feed(tok))
                if piece:
                    s.text += piece
                    yield piece
                if stopped:
                    s.finish_reason = "stop"
                    break
                if len(s.tokens) >= limit:
                    s.finish_reason = "length"
                    break
            else:
                s.finish_reason = "length"
        finally:
            tokens.close()  # cancels and drains what is still in flight
            # the canonical sequence now holds exactly the canonical tokens at positions 0..pos_max
            slot.cached = gen[: self._target(slot).kv_seq_pos_max(0) + 1]
            if before is not None:
                s.stage_stats = _stats_delta(before, self._native.stats())
        if s.finish_reason == "length":
            tail, _ = stop.feed(detok.flush())
            tail += stop.flush()
            if tail:
                s.text += tail
                yield tail


    def _decoded(self, s: Stream, slot: Slot, sampler: Any, gen: List[int], logits: np.ndarray) -> Iterator[int]:
        """The accepted tokens of the decoding mode; `gen` (prompt + accepted tokens) grows as they come.
        When the context fills and context_shift is on, the context is shifted and decoding goes on."""
        while True:
            session = Session(self._target(slot), sampler, gen, logits, self.n_ctx, s.stats, trace=s.trace,
                              costs=slot.policy.costs)
            if self.mode == "iterative":
                yield from DECODERS["iterative"](session)
            else:
                slot.drafter.begin(list(gen))
                yield from DECODERS[self.mode](session, slot.drafter, slot.policy)
            if not (self.config.context_shift and session.full):
                return
            logits = self._shift_context(slot, gen)

    def _shift_context(self, slot: Slot, gen: List[int]) -> np.ndarray:
        """Context shift: keeps the first n_keep tokens of `gen` and the newer half of the rest (in
        place), brings the slot's KV cache to hold them at their new positions, and returns the logits
        of the last one. llama.cpp re-rotates the cached keys instead; recomputing gives the state a
        fresh evaluation of the shortened context has."""
        slot.cached = gen[: self._target(slot).kv_seq_pos_max(0) + 1]
        bos = self.tokenizer.bos_id
        n_keep = max(self.config.n_keep, 1 if (self.tokenizer.add_bos and gen and gen[0] == bos) else 0)
        gen[:] = shifted_context(gen, n_keep)
        logits, _ = self._prefill(slot, gen)
        return logits.copy()


def _serve_quietly(server: DraftServer) -> None:
    """The local draft rank's thread: a failure was already reported to the head through the draft
    channel (it raises it from the generation), so the thread itself ends quietly."""
    try:
        server.serve()
    except Exception:
        pass


def _draft_ranks(requested: Optional[int], draft: Any, world: int, mode: Optional[str], parallel: int) -> int:
    """The draft ranks of a pipeline (Pipeline's draft_ranks argument)."""
    if requested is not None:
        if isinstance(requested, bool) or requested not in (0, 1):
            raise ValueError(f"draft_ranks must be 0 or 1, got {requested!r}")
        if requested and (draft is None or mode == "iterative"):
            raise ValueError("draft_ranks=1 needs a drafter (draft=...) and a speculative mode")
        if requested and parallel > 1:
            raise ValueError("draft_ranks=1 drafts for one generation at a time: it needs parallel=1")
        return requested
    if draft is None or mode == "iterative" or parallel > 1 or not isinstance(draft, (str, os.PathLike)):
        return 0
    s = os.fspath(draft)
    is_model = not (isinstance(s, str) and (s == "ngram" or s.startswith("ngram:")))
    return 1 if is_model and world >= 3 else 0


def _stats_delta(before: List[Dict[str, Any]], after: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for b, a in zip(before, after):
        d = dict(a)
        for k in ("runs", "runs_skipped", "tokens", "layers_run", "layers_skipped", "bytes_sent", "messages_sent",
                  "busy_s", "idle_s"):
            d[k] = a[k] - b[k]
        out.append(d)
    return out


def _timings(s: Stream) -> Dict[str, Any]:
    """The response's ``timings``: llama.cpp's server fields, with its draft counters."""
    return {**s.timings.as_dict(), "draft_n": s.stats.draft_n, "draft_n_accepted": s.stats.draft_n_accepted}


def _usage(s: Stream) -> Dict[str, int]:
    return {"prompt_tokens": len(s.prompt_tokens), "completion_tokens": len(s.tokens),
            "total_tokens": len(s.prompt_tokens) + len(s.tokens)}


def _completion_response(s: Stream, cid: str, created: int, model: str) -> Dict[str, Any]:
    return {
        "id": cid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"text": s.text, "index": 0, "logprobs": None, "finish_reason": s.finish_reason}],
        "usage": _usage(s), "timings": _timings(s),
    }  # fmt: skip


def _chat_response(s: Stream, cid: str, created: int, model: str) -> Dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": s.text},
                     "logprobs": None, "finish_reason": s.finish_reason}],
        "usage": _usage(s), "timings": _timings(s),
    }  # fmt: skip


def _completion_chunks(s: Stream, cid: str, created: int, model: str) -> Iterator[Dict[str, Any]]:
    with closing(s):  # closing the chunk iterator stops the generation
        for piece in s:
            yield {"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]}
    yield {"id": cid, "object": "text_completion", "created": created, "model": model,
           "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": s.finish_reason}],
           "usage": _usage(s), "timings": _timings(s)}


def _chat_chunks(s: Stream, cid: str, created: int, model: str) -> Iterator[Dict[str, Any]]:
    yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}]}
    with closing(s):  # closing the chunk iterator stops the generation
        for piece in s:
            yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                "finish_reason": None}]}
    yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": s.finish_reason}],
           "usage": _usage(s), "timings": _timings(s)}
