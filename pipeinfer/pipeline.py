"""The public engine object: ``pipeinfer.Pipeline``.

This module owns the engine and its roles: on the head it holds the tokenizer, the slots' prompt
caches, and runs each generation's token loop (prefill, a decoder of pipeinfer.speculation over a
Session choosing through the request's TokenChooser, then text); on an MPI worker rank its
constructor serves that rank's stage (or the draft rank). A generation's Stream and Timings live in
stream.py, a request's checks in request.py, the OpenAI-shaped results in completions.py.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import (Any, Dict, Generator, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple,
                    Union, cast, overload)

import numpy as np

from pipeinfer import _core, completions, launch
from pipeinfer.batching.slots import Slot, SlotLayout, close_slots, common_prefix, layout, make_slots
from pipeinfer.chat import BUILTIN_TEMPLATES, builtin_template, render_chat
from pipeinfer.config import EngineConfig, layer_counts, shifted_context
from pipeinfer.drafters import Drafter, make_drafter
from pipeinfer.drafters.remote import DraftServer, RemoteDrafter
from pipeinfer.guard import UseGuard
from pipeinfer.models import resolve
from pipeinfer.request import UNSET, check_token_ids, prompt_ids, sampling_params, text_of
from pipeinfer.sampling import Constraint, SamplingParams, TokenChooser
from pipeinfer.sampling.constraint import GrammarConstraint, GrammarVocabulary, grammar_from_request
from pipeinfer.speculation import DECODERS, Session, SpeculationPolicy, Target
from pipeinfer.stopping import StopMatcher
from pipeinfer.stream import Stream, Timings, stats_delta
from pipeinfer.tokenizer import Tokenizer
from pipeinfer.validate import check_bool, check_choice

__all__ = ["Pipeline", "Stream", "Timings", "Prompt"]

Prompt = Union[str, Sequence[int]]


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
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a GGUF path or a known model name, got {type(model).__name__}")
        if seed is not None:
            SamplingParams(seed=seed)  # the same rule as a request's seed (ValueError naming it)
        check_bool("trace", trace)
        if mode is not None:
            check_choice("mode", mode, ("iterative", "speculative", "pipeinfer"))
        self.model_path = Path(resolve(os.fspath(model)))
        self.default_seed = seed
        self._grammar_vocab: Optional[GrammarVocabulary] = None
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
            str(self.model_path), n_ctx=n_ctx_native, n_threads=cast(int, self.config.n_threads), n_seq_max=1,
            n_stages=self.config.stages, stage_layers=self._stage_layers(), transport=kind,
            act_f16=self.config.act_f16, heartbeat_s=self.config.heartbeat_s,
            dead_after_s=self.config.dead_after_s, n_spec_buffers=n_buffers,
            n_spec_branches=self.policy.n_parallel, repack=not self.config.exact, trace=bool(trace),
            repack_cache_dir=self.config.repack_cache_dir(), n_slots=parallel, draft_ranks=self.draft_ranks,
            kv_type=self.config.kv_type,
        )
        self._gguf.check_unchanged()  # the metadata above and the weights come from one and the same file
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

            self._batcher, self._slots = make_slots(self._native, cast(SlotLayout, self._layout), n_buffers,
                                                    self.policy.n_parallel, self.policy, slot_drafter,
                                                    self.config.n_batch)
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
            if drafter is None:
                raise ValueError("the draft rank needs a drafter (draft=...)")
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
    def _engine(self) -> _core.Pipeline:
        """The native pipeline; RuntimeError once closed (or on an MPI worker rank, which has none)."""
        if self._native is None:
            if not self.is_head:
                raise RuntimeError(f"MPI rank {self.rank} served a worker stage; the pipeline is used on rank 0")
            raise RuntimeError("the pipeline is closed (close() was called); create a new Pipeline")
        return self._native

    @property
    def n_ctx(self) -> int:
        """Context length of one generation (with parallel slots: each slot's share)."""
        return self._layout.n_ctx_slot if self._layout is not None else self._engine.n_ctx

    @property
    def n_vocab(self) -> int:
        return self._engine.n_vocab

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
        engine = self._engine
        if self._batcher is not None:  # between the batches of running generations
            return self._batcher.call(-1, lambda native: native.stats())
        with self._guard.held("read the stage counters"):
            return engine.stats()

    # ----------------------------------------------------------------------------------- tokens
    def tokenize(self, text: Union[str, bytes], add_special: Optional[bool] = None,
                 parse_special: Optional[bool] = None, *, add_bos: Optional[bool] = None,
                 special: Optional[bool] = None) -> List[int]:
        """Text to token ids, as llama.cpp's ``llama_tokenize``.

        Args:
            text: str, or UTF-8 bytes (llama-cpp-python's ``Llama.tokenize(text: bytes)``).
            add_special / add_bos: add BOS/EOS as the vocabulary asks (default True); ``add_bos`` is
                llama-cpp-python's name for the same switch.
            parse_special / special: recognise special-token text such as ``<|im_start|>`` (default False);
                ``special`` is llama-cpp-python's name.
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"text: the bytes are not UTF-8 ({e.reason} at byte {e.start})") from None
        if not isinstance(text, str):
            raise TypeError(f"text must be str or UTF-8 bytes, got {type(text).__name__}")
        add = _alias("add_special", add_special, "add_bos", add_bos, True)
        parse = _alias("parse_special", parse_special, "special", special, False)
        return self.tokenizer.encode(text_of(text, "text"), add_special=add, parse_special=parse)

    def detokenize(self, tokens: Sequence[int], skip_special: bool = False, *, special: Optional[bool] = None,
                   prev_tokens: Optional[Sequence[int]] = None, as_bytes: bool = False) -> Union[str, bytes]:
        """Token ids to text (invalid UTF-8 becomes U+FFFD), or to bytes with ``as_bytes``.

        Args:
            tokens: the ids.
            skip_special: drop control tokens and the BOS / EOS the vocabulary adds (``special`` is
                llama-cpp-python's inverse name: special=True renders them).
            prev_tokens: ids that precede ``tokens`` (llama-cpp-python): only the text ``tokens`` add
                after them is returned, so a leading space or a multi-byte character split across the
                boundary comes out as in one detokenization.
            as_bytes: return the raw bytes (llama-cpp-python's ``detokenize`` returns bytes).
        """
        if special is not None:
            if skip_special is not False:
                raise ValueError("give skip_special or special (its inverse), not both")
            skip = not check_bool("special", special)
        else:
            skip = check_bool("skip_special", skip_special)
        ids = check_token_ids(tokens, self.tokenizer.n_vocab, "tokens") if _nonempty(tokens) else []
        prev = check_token_ids(prev_tokens, self.tokenizer.n_vocab, "prev_tokens") if prev_tokens else []
        tok = self.tokenizer
        data = tok.detokenize(prev + ids, remove_special=skip, unparse_special=not skip)
        if prev:
            data = data[len(tok.detokenize(prev, remove_special=skip, unparse_special=not skip)):]
        return data if check_bool("as_bytes", as_bytes) else data.decode("utf-8", errors="replace")

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits (len(tokens), n_vocab) of every position of a fresh sequence, in one batch.

        Clears the prompt cache. Meant for tests and analysis, not for generation.
        """
        self._engine
        ids = check_token_ids(tokens, self.n_vocab, "tokens")
        with self._guard.held("evaluate logits"):
            self._reset()
            n = len(ids)
            out = self._eval(self._slots[0], ids, 0, np.ones(n, np.uint8), exact=self._batcher is not None).copy()
            self._reset()
        return out

    def reset(self) -> None:
        """Forgets the prompt cache (clears every KV cell)."""
        self._engine
        with self._guard.held("reset the prompt cache"):
            self._reset()

    def _reset(self) -> None:
        for slot in self._slots:
            self._target(slot).kv_clear()
            slot.cached = []

    # ----------------------------------------------------------------------------------- generation
    def stream(self, prompt: Prompt, params: Optional[SamplingParams] = None, *, max_tokens: Any = UNSET,
               add_special: bool = True, parse_special: bool = False, response_format: Optional[Mapping[str, Any]] = None,
               grammar: Optional[str] = None, regex: Optional[str] = None, **sampling: Any) -> Stream:
        """Generates from ``prompt``, yielding text pieces as they are produced.

        Args:
            prompt: text, or a sequence of integer token ids.
            params: a :class:`pipeinfer.SamplingParams`; keyword sampling fields override its fields.
            max_tokens: tokens to generate at most; None, 0 or -1 run to the end of the context
                (default: params.max_tokens, 16 without params).
            add_special: add BOS/EOS as the model's tokenizer asks (text prompts only).
            parse_special: recognise special-token text such as ``<|im_start|>`` in the prompt.
            response_format: structured output, OpenAI's shape: ``{"type": "json_object"}`` or
                ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``.
            grammar: a GBNF (llama.cpp) or Lark grammar the output must follow.
            regex: a regular expression the output must match.
            **sampling: fields of :class:`pipeinfer.SamplingParams` (temperature, top_k, top_p, min_p,
                typical_p, repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, logit_bias,
                seed, stop, stop_token_ids, min_tokens, ignore_eos, logprobs).

        Returns:
            A :class:`Stream` (iterate it for text; ``.tokens``, ``.timings``, ``.finish_reason`` and
            ``.logprobs`` are filled as it goes).
        """
        if not self.is_head:
            return Stream.empty()
        engine = self._engine
        req = sampling_params(params, sampling, max_tokens=max_tokens, default_seed=self.default_seed)
        add = check_bool("add_special", add_special)
        parse = check_bool("parse_special", parse_special)
        ids = prompt_ids(prompt, lambda text: self.tokenizer.encode(text, add_special=add, parse_special=parse),
                         engine.n_vocab, self.n_ctx)
        grammar_text = grammar_from_request(response_format, grammar, regex)
        constraint = GrammarConstraint(self._grammar_vocabulary(), grammar_text) if grammar_text else None
        return Stream(self, ids, req, constraint)

    def generate(self, prompt: Prompt, params: Optional[SamplingParams] = None, **kwargs: Any) -> Stream:
        """Runs :meth:`stream` to completion and returns the finished Stream (``.text``, ``.tokens``)."""
        s = self.stream(prompt, params, **kwargs)
        for _ in s:
            pass
        return s

    @overload
    def create_completion(self, prompt: Prompt, max_tokens: Optional[int] = ..., stream: Literal[False] = ...,
                          **kwargs: Any) -> Dict[str, Any]: ...

    @overload
    def create_completion(self, prompt: Prompt, max_tokens: Optional[int] = ..., *, stream: Literal[True],
                          **kwargs: Any) -> Iterator[Dict[str, Any]]: ...

    @overload
    def create_completion(self, prompt: Prompt, max_tokens: Optional[int], stream: Literal[True],
                          **kwargs: Any) -> Iterator[Dict[str, Any]]: ...

    def create_completion(self, prompt: Prompt, max_tokens: Optional[int] = 16, stream: bool = False,
                          **kwargs: Any) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """OpenAI / llama-cpp-python shaped completion: a ``text_completion`` dict, or an iterator of its
        chunks if ``stream``. Beyond :meth:`stream`'s arguments: ``n`` choices, ``echo`` and
        ``logprobs`` (the number of alternatives per token, OpenAI's completions shape)."""
        return completions.completion(self, prompt, max_tokens, check_bool("stream", stream), **kwargs)

    __call__ = create_completion

    @overload
    def create_chat_completion(self, messages: List[Mapping[str, Any]], max_tokens: Optional[int] = ...,
                               stream: Literal[False] = ..., **kwargs: Any) -> Dict[str, Any]: ...

    @overload
    def create_chat_completion(self, messages: List[Mapping[str, Any]], max_tokens: Optional[int] = ..., *,
                               stream: Literal[True], **kwargs: Any) -> Iterator[Dict[str, Any]]: ...

    @overload
    def create_chat_completion(self, messages: List[Mapping[str, Any]], max_tokens: Optional[int],
                               stream: Literal[True], **kwargs: Any) -> Iterator[Dict[str, Any]]: ...

    def create_chat_completion(self, messages: List[Mapping[str, Any]], max_tokens: Optional[int] = None,
                               stream: bool = False, **kwargs: Any) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """OpenAI-shaped chat completion; the prompt is rendered with the GGUF's chat template. Beyond
        :meth:`stream`'s arguments: ``n`` choices, ``logprobs`` / ``top_logprobs`` (OpenAI's chat
        shape) and ``response_format``."""
        return completions.chat_completion(self, messages, max_tokens, check_bool("stream", stream), **kwargs)

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
            thread, self._draft_thread = getattr(self, "_draft_thread", None), None
            if thread is not None:
                thread.join(timeout=30)
            drafter, self.drafter = getattr(self, "drafter", None), None
            if drafter is not None:
                drafter.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- internals
    def _grammar_vocabulary(self) -> GrammarVocabulary:
        """The vocabulary structured output works over (built on first use, kept for the engine's life)."""
        if self._grammar_vocab is None:
            self._grammar_vocab = GrammarVocabulary.from_tokenizer(self.tokenizer)
        return self._grammar_vocab

    def _target(self, slot: Slot) -> Any:
        """The slot's Target: the native pipeline itself when there is one slot."""
        return self._native if self._batcher is None else slot.target

    def _eval(self, slot: Slot, tokens: Sequence[int], pos0: int, want: np.ndarray, exact: bool) -> np.ndarray:
        """Runs one batch of a slot's canonical sequence and returns the rows asked for."""
        n = len(tokens)
        args = (np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32), np.zeros(n, np.int32), want)
        if self._batcher is None:
            return self._engine.decode(*args)
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

    def _run(self, s: Stream, ids: List[int], params: SamplingParams,
             constraint: Optional[Constraint]) -> Generator[str, None, None]:
        slot = self._slots[s._slot]
        if self._batcher is None:
            yield from self._generate(s, slot, ids, params, constraint)
            return
        self._batcher.begin(slot.index)
        try:
            yield from self._generate(s, slot, ids, params, constraint)
        finally:
            self._batcher.end(slot.index)

    def _generate(self, s: Stream, slot: Slot, ids: List[int], params: SamplingParams,
                  constraint: Optional[Constraint]) -> Generator[str, None, None]:
        """The token loop of one generation: prefill, the decoder's accepted tokens, then text (end
        tokens and stop_token_ids, stop strings, the limit, cancellation)."""
        # per-generation stage counters only when the generation has the pipeline to itself
        before = self._engine.stats() if self._batcher is None else None
        t0 = time.perf_counter()
        chooser = TokenChooser(params, eog_ids=self.tokenizer.eog_ids, constraint=constraint)
        s.chooser = chooser
        stop_ids = frozenset(params.stop_token_ids)
        stop = StopMatcher(list(params.stop or ()))
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
        tokens = self._decoded(s, slot, chooser, gen, logits.copy())
        limit = self.n_ctx - len(ids) if not self.config.context_shift else float("inf")
        if params.max_tokens is not None:
            limit = min(limit, params.max_tokens)
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
                if self.tokenizer.is_eog(tok) or tok in stop_ids:
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
                s.stage_stats = stats_delta(before, self._engine.stats())
        if s.finish_reason == "length":
            tail, _ = stop.feed(detok.flush())
            tail += stop.flush()
            if tail:
                s.text += tail
                yield tail


    def _decoded(self, s: Stream, slot: Slot, chooser: TokenChooser, gen: List[int],
                 logits: np.ndarray) -> Generator[int, None, None]:
        """The accepted tokens of the decoding mode; `gen` (prompt + accepted tokens) grows as they come.
        When the context fills and context_shift is on, the context is shifted and decoding goes on."""
        decoder = DECODERS[self.mode]
        while True:
            session = Session(cast(Target, self._target(slot)), _ChooserBridge(chooser), gen, logits, self.n_ctx,
                              s.stats, trace=s.trace, costs=slot.policy.costs)
            if slot.drafter is None:
                yield from decoder(session)
            else:
                slot.drafter.begin(list(gen))
                drafter = slot.drafter if chooser.constraint is None else _GrammarDrafter(slot.drafter, chooser)
                yield from decoder(session, drafter, slot.policy)
            if not (self.config.context_shift and session.full):
                return
            logits = self._shift_context(slot, gen)
            chooser.shifted(len(gen))

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


class _ChooserBridge:
    """Lets today's Session (which asks a sampler for `is_greedy`, `params`, `probs` and `rng` and
    verifies with speculation.verify_position) choose every token through the TokenChooser, until the
    Session takes the chooser itself.

    `probs(row, history)` is called once per decided position, in order: it asks the chooser for the
    token (processed logits; logprobs recorded, grammar advanced) and returns a one-hot vector at it.
    verify_position then confirms the drafted candidate equal to that token, if any. Drawing the token
    from p and matching it against the candidates gives the same joint law of (token, accepted
    candidate) as sequential rejection sampling with point-mass proposals, so this is exact. Its own
    generator absorbs verify_position's draws, leaving the chooser's random stream untouched.
    """

    def __init__(self, chooser: TokenChooser) -> None:
        self.chooser = chooser
        self.params = chooser.params
        self.is_greedy = chooser.argmax_only  # argmax of raw rows only when nothing is processed
        self.rng = np.random.Generator(np.random.PCG64(0))

    def adjusted_logits(self, row: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """Only asked when is_greedy, i.e. when nothing processes the logits: the row itself."""
        return np.asarray(row)

    def probs(self, row: np.ndarray, history: Sequence[int]) -> np.ndarray:
        tok, _ = self.chooser.choose(row, history, ())
        out = np.zeros(np.shape(row)[-1], dtype=np.float64)
        out[tok] = 1.0
        return out


class _GrammarDrafter(Drafter):
    """A slot's drafter for one constrained generation: its drafts without the branches the grammar
    rejects (TokenChooser.cut_draft), so drafts that break the grammar are cut before verification.
    Everything else is the slot's drafter's (which this wrapper never closes)."""

    def __init__(self, inner: Drafter, chooser: TokenChooser) -> None:
        self.inner, self.chooser = inner, chooser
        self.n_vocab, self.cheap, self.asynchronous = inner.n_vocab, inner.cheap, inner.asynchronous

    @property
    def interval_s(self) -> Optional[float]:
        return self.inner.interval_s

    @interval_s.setter
    def interval_s(self, value: Optional[float]) -> None:
        self.inner.interval_s = value

    def propose(self, context: Sequence[int], limits: Any) -> Any:
        return self.chooser.cut_draft(context, self.inner.propose(context, limits))

    def begin(self, prompt: Sequence[int]) -> None:
        self.inner.begin(prompt)

    def accepted(self, tokens: Sequence[int]) -> None:
        self.inner.accepted(tokens)

    def wait(self, timeout_s: float) -> bool:
        return self.inner.wait(timeout_s)

    def pending(self, context: Sequence[int], n: int) -> bool:
        return self.inner.pending(context, n)


def _alias(name: str, value: Optional[bool], alias: str, alias_value: Optional[bool], default: bool) -> bool:
    """One switch under two names (ours and llama-cpp-python's): the one given, or the default."""
    if value is not None and alias_value is not None and bool(value) != bool(alias_value):
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r} disagree; give one of them")
    chosen = value if value is not None else alias_value
    return default if chosen is None else check_bool(name if value is not None else alias, chosen)


def _nonempty(tokens: Any) -> bool:
    try:
        return len(tokens) > 0
    except TypeError:
        return True  # not a sequence: check_token_ids names the problem

