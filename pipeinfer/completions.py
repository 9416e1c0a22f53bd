"""OpenAI / llama-cpp-python shaped results: completion and chat-completion dicts, and their chunks.

This module owns the response shapes and the request options that only exist at this level: `n`
choices (generated one after the other; a seeded request uses seed + i for choice i, so choices
differ yet reproduce), `echo`, and OpenAI's two logprobs shapes (completions: ``tokens`` /
``token_logprobs`` / ``top_logprobs`` / ``text_offset``; chat: ``content`` entries with ``bytes`` and
``top_logprobs``). It consumes `Stream`s and does not tokenize, sample or run the model itself.
"""
from __future__ import annotations

import time
from contextlib import closing
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from pipeinfer.sampling import MAX_TOP_LOGPROBS, TokenLogprob
from pipeinfer.stream import Stream
from pipeinfer.validate import check_bool, check_int

if TYPE_CHECKING:
    from pipeinfer.pipeline import Pipeline, Prompt

__all__ = ["completion", "chat_completion", "usage", "timings", "echo_text", "choice_seed", "completion_response",
           "completion_chunks", "chat_response", "chat_chunks", "MAX_CHOICES"]

Result = Union[Dict[str, Any], Iterator[Dict[str, Any]]]
MAX_CHOICES = 128
_SEED_MOD = 2**64


def usage(prompt_tokens: int, streams: Sequence[Stream]) -> Dict[str, int]:
    """OpenAI's ``usage`` object: the prompt counted once, the completions of every choice."""
    done = sum(len(s.tokens) for s in streams)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}


def timings(s: Stream) -> Dict[str, Any]:
    """The response's ``timings``: llama.cpp's server fields, with its draft counters."""
    return {**s.timings.as_dict(), "draft_n": s.stats.draft_n, "draft_n_accepted": s.stats.draft_n_accepted}


def _choice_streams(pipe: "Pipeline", prompt: Any, n: int, kwargs: Dict[str, Any]) -> Iterator[Stream]:
    """The streams of choices 0..n-1, each created when the previous one is done (one engine)."""
    seed = kwargs.get("seed", pipe.default_seed)
    for i in range(n):
        kw = dict(kwargs)
        if seed is not None and n > 1:
            kw["seed"] = choice_seed(seed, i)
        yield pipe.stream(prompt, **kw)


def choice_seed(seed: Any, i: int) -> Any:
    """The seed of choice ``i`` of a seeded request: seed + i (mod 2**64), so choices differ yet
    reproduce (a value that is not an integer is passed on for SamplingParams to refuse)."""
    return (seed + i) % _SEED_MOD if isinstance(seed, int) and not isinstance(seed, bool) else seed


def _token_str(tokenizer: Any, tok: int) -> Tuple[str, List[int]]:
    piece = tokenizer.token_to_piece(tok)
    return piece.decode("utf-8", errors="replace"), list(piece)


# ----------------------------------------------------------------------------------------- completions
def completion(pipe: "Pipeline", prompt: "Prompt", max_tokens: Optional[int], stream: bool, *, n: int = 1,
               echo: bool = False, logprobs: Optional[int] = None, suffix: Optional[str] = None,
               **kwargs: Any) -> Result:
    """``create_completion``: a ``text_completion`` dict, or an iterator of its chunks if ``stream``.

    Args (beyond Pipeline.stream's): n: choices (1..128); echo: the prompt's text precedes each
    choice's text; logprobs: None or the number of alternatives per token (0..20), OpenAI's shape;
    suffix: not supported (ValueError if given).
    """
    n = check_int("n", n, 1, MAX_CHOICES)
    echo = check_bool("echo", echo)
    if suffix is not None:
        raise ValueError("suffix (text after the completion) is not supported")
    if logprobs is not None:
        if echo:
            raise ValueError("echo with logprobs is not supported (prompt tokens have no logprobs here)")
        kwargs["logprobs"] = check_int("logprobs", logprobs, 0, MAX_TOP_LOGPROBS, "or None")
    kwargs["max_tokens"] = max_tokens
    streams = _choice_streams(pipe, prompt, n, kwargs)
    first = next(streams)  # validates the request before anything is returned
    created = int(time.time())
    cid, model = f"cmpl-{created}-{id(first):x}", pipe.model_path.name
    prefix = echo_text(pipe, prompt, first) if echo else ""
    if stream:
        return completion_chunks(first, streams, n, cid, created, model, prefix)
    return completion_response(_finished(first, streams), cid, created, model, prefix)


def _finished(first: Stream, rest: Iterator[Stream]) -> List[Stream]:
    """Runs each choice's stream to its end, one after the other."""
    done: List[Stream] = []
    for s in _chain(first, rest):
        for _ in s:
            pass
        done.append(s)
    return done


def _chain(first: Stream, rest: Iterator[Stream]) -> Iterator[Stream]:
    yield first
    yield from rest


def echo_text(pipe: "Pipeline", prompt: Any, s: Stream) -> str:
    """The prompt's text as ``echo`` repeats it (token prompts detokenized)."""
    return prompt if isinstance(prompt, str) else str(pipe.detokenize(s.prompt_tokens))


def _completion_logprobs(s: Stream, start: int, offset0: int,
                         end: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """OpenAI completions' logprobs object for tokens [start, end) of a stream (None if not asked)."""
    records = s.logprobs
    if records is None:
        return None
    end = len(records) if end is None else end
    tokens, token_lps, tops, offsets = [], [], [], []
    offset = offset0 + (len(s.tokenizer.decode(s.tokens[:start])) if start else 0)
    for rec in records[start:end]:
        text, _ = _token_str(s.tokenizer, rec.token)
        tokens.append(text)
        token_lps.append(rec.logprob)
        tops.append({_token_str(s.tokenizer, t)[0]: lp for t, lp in rec.top} if s.chooser and s.chooser.params.logprobs
                    else None)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}


def _completion_chunks(head: Dict[str, Any], first: Stream, rest: Iterator[Stream], n: int,
                       prefix: str) -> Iterator[Dict[str, Any]]:
    """Chunks of each choice in turn; the last chunk of the last choice carries usage and timings."""
    done: List[Stream] = []
    for i, s in enumerate(_chain(first, rest)):
        if prefix:
            yield {**head, "choices": [{"text": prefix, "index": i, "logprobs": None, "finish_reason": None}]}
        sent = 0
        with closing(s):  # closing the chunk iterator stops the generation
            for piece in s:
                lp = _completion_logprobs(s, sent, len(prefix), len(s.tokens))
                sent = len(s.tokens)
                yield {**head, "choices": [{"text": piece, "index": i, "logprobs": lp, "finish_reason": None}]}
        lp = _completion_logprobs(s, sent, len(prefix)) if sent < len(s.tokens) else None
        done.append(s)
        last: Dict[str, Any] = {"choices": [{"text": "", "index": i, "logprobs": lp, "finish_reason": s.finish_reason}]}
        if i == n - 1:
            last.update(usage=usage(len(first.prompt_tokens), done), timings=timings(s))
        yield {**head, **last}


# ------------------------------------------------------------------------------------------------ chat
def chat_completion(pipe: "Pipeline", messages: List[Mapping[str, Any]], max_tokens: Optional[int], stream: bool,
                    *, n: int = 1, logprobs: bool = False, top_logprobs: Optional[int] = None,
                    **kwargs: Any) -> Result:
    """``create_chat_completion``: a ``chat.completion`` dict, or an iterator of its chunks if ``stream``.

    Args (beyond Pipeline.stream's): n: choices (1..128); logprobs: report each token's log-probability
    (OpenAI's chat shape); top_logprobs: alternatives per token (0..20, needs logprobs=True).
    """
    n = check_int("n", n, 1, MAX_CHOICES)
    if check_bool("logprobs", logprobs):
        kwargs["logprobs"] = 0 if top_logprobs is None else check_int("top_logprobs", top_logprobs, 0, MAX_TOP_LOGPROBS)
    elif top_logprobs is not None:
        raise ValueError("top_logprobs needs logprobs=True")
    kwargs.setdefault("add_special", True)
    kwargs.setdefault("parse_special", True)
    kwargs["max_tokens"] = max_tokens
    prompt = pipe.render_chat(messages)
    streams = _choice_streams(pipe, prompt, n, kwargs)
    first = next(streams)
    created = int(time.time())
    cid, model = f"chatcmpl-{created}-{id(first):x}", pipe.model_path.name
    if stream:
        return chat_chunks(first, streams, n, cid, created, model)
    return chat_response(_finished(first, streams), cid, created, model)


def _chat_logprobs(tokenizer: Any, records: Optional[Sequence[TokenLogprob]]) -> Optional[Dict[str, Any]]:
    """OpenAI chat's logprobs object for these records (None when logprobs were not asked for)."""
    if records is None:
        return None

    def entry(tok: int, lp: float) -> Dict[str, Any]:
        text, raw = _token_str(tokenizer, tok)
        return {"token": text, "logprob": lp, "bytes": raw}

    content = [{**entry(r.token, r.logprob), "top_logprobs": [entry(t, lp) for t, lp in r.top]} for r in records]
    return {"content": content, "refusal": None}


def _chat_chunks(head: Dict[str, Any], first: Stream, rest: Iterator[Stream],
                 n: int) -> Iterator[Dict[str, Any]]:
    """Chunks of each choice in turn; the last chunk of the last choice carries usage and timings."""
    done: List[Stream] = []

    def chunk(i: int, delta: Dict[str, Any], lp: Any, finish: Optional[str]) -> Dict[str, Any]:
        return {**head, "choices": [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}]}

    for i, s in enumerate(_chain(first, rest)):
        yield chunk(i, {"role": "assistant"}, None, None)
        sent = 0
        with closing(s):  # closing the chunk iterator stops the generation
            for piece in s:
                recs = s.logprobs
                lp = _chat_logprobs(s.tokenizer, recs[sent:]) if recs is not None else None
                sent = len(s.tokens)
                yield chunk(i, {"content": piece}, lp, None)
        recs = s.logprobs
        lp = _chat_logprobs(s.tokenizer, recs[sent:]) if recs is not None and sent < len(recs) else None
        done.append(s)
        last = chunk(i, {}, lp, s.finish_reason)
        if i == n - 1:
            last.update(usage=usage(len(first.prompt_tokens), done), timings=timings(s))
        yield last


# ------------------------------------------------------------------------- from made streams (the server)
def completion_response(streams: Sequence[Stream], cid: str, created: int, model: str,
                        prefix: str = "") -> Dict[str, Any]:
    """The ``text_completion`` dict of finished streams, one choice each (with their logprobs when the
    request asked; ``prefix``: the echoed prompt)."""
    choices = [{"text": prefix + s.text, "index": i, "logprobs": _completion_logprobs(s, 0, len(prefix)),
                "finish_reason": s.finish_reason} for i, s in enumerate(streams)]
    return {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": usage(len(streams[0].prompt_tokens), streams), "timings": timings(streams[-1])}


def completion_chunks(first: Stream, rest: Iterable[Stream], n: int, cid: str, created: int, model: str,
                      prefix: str = "") -> Iterator[Dict[str, Any]]:
    """The ``text_completion`` chunks of ``n`` choices as they run: ``first``, then each stream of
    ``rest`` (taken when the previous choice is done)."""
    head = {"id": cid, "object": "text_completion", "created": created, "model": model}
    return _completion_chunks(head, first, iter(rest), n, prefix)


def chat_response(streams: Sequence[Stream], cid: str, created: int, model: str) -> Dict[str, Any]:
    """The ``chat.completion`` dict of finished streams, one choice each (with their logprobs when the
    request asked)."""
    choices = [{"index": i, "message": {"role": "assistant", "content": s.text},
                "logprobs": _chat_logprobs(s.tokenizer, s.logprobs), "finish_reason": s.finish_reason}
               for i, s in enumerate(streams)]
    return {"id": cid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": usage(len(streams[0].prompt_tokens), streams), "timings": timings(streams[-1])}


def chat_chunks(first: Stream, rest: Iterable[Stream], n: int, cid: str, created: int,
                model: str) -> Iterator[Dict[str, Any]]:
    """The ``chat.completion.chunk`` chunks of ``n`` choices as they run (as completion_chunks)."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    return _chat_chunks(head, first, iter(rest), n)
