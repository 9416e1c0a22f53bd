"""llama.cpp side of bench/bench_vs_llamacpp.py: runs in the separate llama-cpp-python venv, never in CI.

Reads one JSON request on stdin and prints one JSON object on stdout:

    request  {"model": PATH, "threads": N, "prompt_text": STR, "pp_text": STR, "n_gen": 64, "pp_tokens": 512,
              "rounds": 3}
    reply    {"prompt_ids": [...], "decode_tokens": [...], "decode_s": [...], "pp_ids": [...],
              "pp_argmax": INT, "pp_s": [...], "version": STR}

- decode: the prompt (prompt_text tokenized by llama.cpp, no BOS) as one batch, then n_gen greedy
  tokens one per llama_decode call; decode_s holds the seconds of the n_gen single-token steps of each
  round (the prompt is not timed); decode_tokens are the greedy tokens (first argmax).
- prompt processing: pp_tokens ids (pp_text repeated and cut) decoded as ONE batch with only the
  last row's logits requested; pp_s holds the seconds of that llama_decode per round.

Greedy selection is numpy argmax on the last row's logits, as the pipeinfer side does, so both sides
pay the same per-token Python work. Flash attention off, n_batch = n_ubatch = 512.
"""
from __future__ import annotations

import ctypes
import json
import sys
import time

import llama_cpp
import numpy as np


def main() -> None:
    req = json.load(sys.stdin)
    n_threads = int(req["threads"])
    n_gen = int(req["n_gen"])
    n_pp = int(req["pp_tokens"])
    rounds = int(req.get("rounds", 3))
    llm = llama_cpp.Llama(model_path=req["model"], n_ctx=max(1024, n_pp + 64), n_batch=512, n_ubatch=512,
                          n_threads=n_threads, n_threads_batch=n_threads, logits_all=False, flash_attn=False,
                          verbose=False)
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    text = req["prompt_text"].encode("utf-8")
    prompt = llm.tokenize(text, add_bos=False, special=False)
    pp_ids: list[int] = []
    while len(pp_ids) < n_pp:
        pp_ids += llm.tokenize(b" " + req["pp_text"].encode("utf-8"), add_bos=False, special=False)
    pp_ids = pp_ids[:n_pp]

    def run(tokens: list[int], n_past: int) -> int:
        """Decodes tokens at positions n_past.., logits for the last only; returns their argmax."""
        llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=False)
        llm._ctx.decode(llm._batch)
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
        return int(np.argmax(logits))

    def clear() -> None:
        llm._ctx.kv_cache_clear()

    decode_s: list[float] = []
    tokens: list[int] = []
    for r in range(rounds + 1):  # round 0 warms up
        clear()
        tok = run(prompt, 0)
        out = []
        t0 = time.perf_counter()
        for i in range(n_gen):
            out.append(tok)
            tok = run([tok], len(prompt) + i)
        dt = time.perf_counter() - t0
        if r > 0:
            decode_s.append(dt)
        tokens = out

    pp_s: list[float] = []
    pp_argmax = -1
    for r in range(rounds + 1):
        clear()
        t0 = time.perf_counter()
        pp_argmax = run(pp_ids, 0)
        dt = time.perf_counter() - t0
        if r > 0:
            pp_s.append(dt)

    json.dump({"prompt_ids": prompt, "decode_tokens": tokens, "decode_s": decode_s, "pp_ids": pp_ids,
               "pp_argmax": pp_argmax, "pp_s": pp_s, "version": llama_cpp.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
