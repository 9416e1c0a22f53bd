#!/usr/bin/env python3
"""Writes the llama.cpp reference data in tests/data/ with llama-cpp-python.

Run it with the separate tool virtual environment (never part of the project or CI):
    python3 -m venv /work/venv-llama && /work/venv-llama/bin/pip install llama-cpp-python numpy
    /work/venv-llama/bin/python scripts/make_reference.py [--models-dir DIR] [--out tests/data]

For each model it writes
  tokens_<model>.json  token ids from llama.cpp's tokenizer for a corpus (add_bos x special), the bytes
                       of every piece (llama_token_to_piece, special on/off), whole-sequence
                       llama_detokenize results, the end-of-generation ids and non-normal token attributes;
  greedy_<model>.json  greedy continuations (argmax, 32 tokens, n_ctx 512) of raw-text prompts, with the
                       top-20 logits of the first 4 generated positions.
and, from vocabulary-only GGUF files it writes to a temporary folder (gguf-py needed in the venv),
  tokens_pretypes.json     ids for the SmolLM2 vocabulary under other tokenizer.ggml.pre values;
  tokens_synthetic_spm.json  a small SentencePiece-style vocabulary (stored in the file) and its ids.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import sys
from pathlib import Path

import math
import tempfile
from collections import Counter

import llama_cpp
import numpy as np
from llama_cpp import Llama

MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
}

_PARAGRAPH = (
    "Tokenizers split text into pieces that a language model can digest. Byte-level BPE starts from the "
    "256 bytes and repeatedly merges the most frequent adjacent pair, so every string, even one it has "
    "never seen, can be represented. SentencePiece works on characters instead, escapes spaces as U+2581 "
    "and falls back to byte tokens for anything missing. In practice the differences show up in numbers "
    "(1234567 vs. 1 2 3 4 5 6 7), whitespace runs, and rare scripts such as Ge'ez or Tifinagh."
)

CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    _PARAGRAPH,
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    '#include <stdio.h>\n\nint main(void) {\n\tprintf("hi\\n");\n\treturn 0;\n}\n',
    "class Foo:\n    def __init__(self):\n        self.x = {'a': [1, 2, 3]}  # comment\n\n\n",
    "café naïve résumé Ångström Zürich",
    "日本語のテキストです。中文测试。한국어 문장",
    "emoji: 🤖🚀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "e\u0301 a\u0308 n\u0303 combining marks o\u0302\u0323",
    "שלום עולם مرحبا بالعالم",
    "Ελληνικά και Русский текст",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\tand\t\ttabs",
    "\n\n\n",
    "line1\nline2\r\nline3\n",
    "a  b   c    d     e",
    " ",
    "    indented with four spaces\n        and eight\n",
    "1234567",
    "3.14159",
    "1,000,000",
    "The year 2024 had 366 days; 2^10 = 1024 and 007.",
    "Call 555-0123 or +1 (800) 123-4567 at 10:30pm",
    "don't can't won't it's I'm you're they've we'd she'll",
    "I'LL DON'T IT'S We'Re THEY'VE",
    "!!! ??? ... --- *** ### @@@ ~~~",
    "(a+b)*[c-d]/{e%f} <= x && y || !z",
    "",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_end|><|im_end|> x",
    "<tool_call>x</tool_call>",
    "<reponame>test<file_sep>code",
    "<s>[INST] hello [/INST]",
    "\u00a0non-breaking\u00a0space and\u3000ideographic space",
    "zero\u200bwidth and\u200djoiner",
    "control \x01\x02\x7f chars",
    "URL: https://example.com/path?q=1&r=2#frag email@example.com",
    '{"key": [1, 2.5, true, null], "nested": {"a": "b"}}',
    "CamelCaseIdentifier snake_case_identifier kebab-case-name",
    "x" * 50,
    "Mixed 中文 and English 和 numbers 123",
    "´`¨ ½ ² ³ µ ° ± × ÷",
    "Ⅻ ⅷ ① ٣٤ ໓ 𝟙",
    "∑∫√∞≠≤≥ ≈ → ← ⇒",
    "Ge'ez: ሰላም Tifinagh: ⵜⴰⵎⴰⵣⵉⵖⵜ Devanagari: नमस्ते",
]

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
# Models whose greedy reference has more prompts (issue 13 asks for 6 on Gemma 3).
EXTRA_PROMPTS = {
    "gemma3-270m": ["The three primary colors are", "import numpy as np\n\ndef softmax(x):",
                    "Q: What is 17 times 3?\nA:"],
}
N_GREEDY = 32
N_TOP_POSITIONS = 4
N_TOP = 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def vocab_of(llm: Llama):
    model = llm._model  # llama-cpp-python's LlamaModel wrapper
    return model.vocab if getattr(model, "vocab", None) else llama_cpp.llama_model_get_vocab(model.model)


def piece(vocab, tok: int, special: bool) -> bytes:
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 256, 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, -n, 0, special)
    return buf.raw[:n]


def detokenize(vocab, ids, remove_special: bool, unparse_special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, remove_special, unparse_special)
    if n < 0:
        raise RuntimeError(f"llama_detokenize needs {-n} bytes")
    return buf.raw[:n]


def make_tokens(name: str, path: Path) -> dict:
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = vocab_of(llm)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    cases, used = [], set()
    for text in CORPUS:
        ids = {}
        for add_bos in (True, False):
            for special in (False, True):
                got = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
                ids[f"add_bos={int(add_bos)},special={int(special)}"] = got
                used.update(got)
        full = ids["add_bos=1,special=1"]
        cases.append({
            "text": text,
            "ids": ids,
            # llama_detokenize(full, remove_special, unparse_special) for the two usual settings
            "detok_keep_special_hex": detokenize(vocab, full, False, True).hex(),
            "detok_skip_special_hex": detokenize(vocab, full, True, False).hex(),
        })
    pieces = {str(t): [piece(vocab, t, True).hex(), piece(vocab, t, False).hex()] for t in sorted(used)}
    eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    normal = llama_cpp.LLAMA_TOKEN_ATTR_NORMAL
    attrs = {}
    for t in range(n_vocab):
        a = int(llama_cpp.llama_vocab_get_attr(vocab, t))
        if a != normal:
            attrs[str(t)] = a
    return {
        "model": name,
        "model_file": path.name,
        "model_sha256": sha256(path),
        "llama_cpp_python_version": llama_cpp.__version__,
        "n_vocab": n_vocab,
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "eot_id": llama_cpp.llama_vocab_eot(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog_ids": eog,
        "attrs_not_normal": attrs,
        "pieces_hex": pieces,
        "cases": cases,
    }


def make_greedy(name: str, path: Path, seed: int) -> dict:
    llm = Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2,
                logits_all=True, seed=seed, verbose=False)
    vocab = vocab_of(llm)
    runs = []
    for prompt in PROMPTS + EXTRA_PROMPTS.get(name, []):
        prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(prompt_ids)
        generated, top, margins = [], [], []
        for step in range(N_GREEDY):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")
            tok = int(order[0])  # greedy: first maximum, as llama.cpp's greedy sampler
            margins.append(round(float(logits[order[0]] - logits[order[1]]), 5))
            if step < N_TOP_POSITIONS:
                top.append([[int(i), float(logits[i])] for i in order[:N_TOP]])
            generated.append(tok)
            llm.eval([tok])
        # cross-check with llama-cpp-python's own sampler at top_k=1, temp 0, no repeat penalty
        llm.reset()
        sampled = []
        for tok in llm.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                reset=True):
            sampled.append(int(tok))
            if len(sampled) == N_GREEDY:
                break
        if sampled != generated:
            print(f"warning: {name} {prompt!r}: sampler {sampled} != argmax {generated}", file=sys.stderr)
        runs.append({
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "generated_ids": generated,
            "sampler_agrees": sampled == generated,
            "text_hex": detokenize(vocab, generated, False, True).hex(),
            "top20_first4": top,
            "top1_top2_margins": margins,  # logit gap at every generated position (small = fragile)
        })
    return {
        "model": name,
        "model_file": path.name,
        "model_sha256": sha256(path),
        "llama_cpp_python_version": llama_cpp.__version__,
        "settings": {"n_ctx": 512, "n_batch": 512, "n_threads": 2, "seed": seed, "greedy": "argmax",
                     "top_k": 1, "temperature": 0.0, "repeat_penalty": 1.0, "add_bos": "model default",
                     "n_generated": N_GREEDY, "top_logits": f"top {N_TOP} of the first {N_TOP_POSITIONS}"},
        "runs": runs,
    }


# ------------------------------------------------------------------ vocabulary-only models

PRE_TYPES = ["gpt-2", "llama-bpe", "deepseek-coder", "falcon", "starcoder", "", "stablelm2", "bloom",
             "poro-chat", "viking", "tekken", "gpt-4o", "chatglm-bpe", "glm4", "seed-coder", "bailingmoe",
             "command-r", "qwen35", "ufakzeka"]


def _write_vocab_gguf(path: Path, tok: dict) -> None:
    """A GGUF with llama hyper-parameters and a tokenizer but no tensors (enough for vocab_only)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(tok["model"])
    if tok.get("pre"):
        w.add_tokenizer_pre(tok["pre"])
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["token_type"])
    if "scores" in tok:
        w.add_token_scores(tok["scores"])
    if "merges" in tok:
        w.add_token_merges(tok["merges"])
    for key, value in tok.get("ids", {}).items():
        w.add_uint32(f"tokenizer.ggml.{key}", value)
    for key, value in tok.get("flags", {}).items():
        w.add_bool(f"tokenizer.ggml.{key}", value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _tokenize_all(gguf_path: Path, combos) -> list:
    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    vocab = vocab_of(llm)
    cases = []
    for text in CORPUS:
        ids = {f"add_bos={int(b)},special={int(s)}": llm.tokenize(text.encode("utf-8"), add_bos=b, special=s)
               for b, s in combos}
        full = ids[f"add_bos={int(combos[0][0])},special={int(combos[0][1])}"]
        keep, skip = detokenize(vocab, full, False, True), detokenize(vocab, full, True, False)
        same = text.encode("utf-8")
        # detokenized bytes as hex, or null where they equal the UTF-8 of the text (keeps the file small)
        cases.append({"text": text, "ids": ids,
                      "detok_keep_special_hex": None if keep == same else keep.hex(),
                      "detok_skip_special_hex": None if skip == same else skip.hex()})
    return cases


def make_pretypes(smollm_path: Path, tmp: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(smollm_path))
    f = reader.fields
    strings = lambda key: [bytes(f[key].parts[i]).decode("utf-8") for i in f[key].data]  # noqa: E731
    base = {
        "model": "gpt2",
        "tokens": strings("tokenizer.ggml.tokens"),
        "token_type": [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data],
        "merges": strings("tokenizer.ggml.merges"),
        "ids": {"bos_token_id": 1, "eos_token_id": 2},
        "flags": {"add_bos_token": False},
    }
    out = {"base_model_file": smollm_path.name, "base_model_sha256": sha256(smollm_path),
           "llama_cpp_python_version": llama_cpp.__version__, "pre_types": {}}
    for pre in PRE_TYPES:
        path = tmp / f"pre_{pre or 'missing'}.gguf"
        _write_vocab_gguf(path, dict(base, pre=pre))
        out["pre_types"][pre] = _tokenize_all(path, [(True, True)])
    return out


def synthetic_spm_vocab() -> dict:
    """A SentencePiece-style vocabulary grown from the corpus: <unk> <s> </s>, 256 byte tokens, the
    characters of the Latin-script strings and their frequent 2..5-character substrings (space escaped as
    U+2581), scored by frequency and rounded to halves so that ties occur; CJK, emoji and other rare
    characters are left to byte fallback. Two extra tokens: a control <|im_start|>, a user-defined <tool>."""
    text = (" " + " ".join(CORPUS[:30])).replace(" ", "\u2581")
    counts = Counter()
    for n in range(2, 6):
        for i in range(len(text) - n + 1):
            counts[text[i:i + n]] += 1
    chars = sorted({c for c in text if ord(c) < 0x250 or c == "\u2581"})
    pieces = {c: -12.0 for c in chars}
    for sub, c in counts.most_common():
        if c < 3 or len(pieces) >= 900:
            continue
        if all(ord(ch) < 0x250 or ch == "\u2581" for ch in sub) and "\n" not in sub:
            pieces.setdefault(sub, round(2.0 * (math.log(c) - 0.4 * len(sub))) / 2.0 - 8.0)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(pieces) + ["<|im_start|>", "<tool>"]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [3, 4]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + list(pieces.values()) + [0.0, 0.0]
    return {"model": "llama", "tokens": tokens, "token_type": types, "scores": scores}


def make_synthetic_spm(tmp: Path) -> dict:
    vocab = synthetic_spm_vocab()
    out = {"llama_cpp_python_version": llama_cpp.__version__, "vocab": vocab, "variants": {}}
    combos = [(True, True), (True, False), (False, False)]
    for name, flags in (("default", {}), ("no_space_prefix", {"add_space_prefix": False})):
        path = tmp / f"spm_{name}.gguf"
        _write_vocab_gguf(path, dict(vocab, flags=flags))
        out["variants"][name] = {"flags": flags, "cases": _tokenize_all(path, combos)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=os.path.expanduser("~/.cache/pipeinfer/models"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "data"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--only", choices=["tokens", "greedy", "vocab"], default=None)
    ap.add_argument("--model", choices=list(MODELS), action="append", default=None,
                    help="only these models (repeatable; default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, fname in MODELS.items():
        if args.only == "vocab":
            break
        if args.model and name not in args.model:
            continue
        path = Path(args.models_dir) / fname
        if not path.exists():
            print(f"error: model {name} not found at {path}", file=sys.stderr)
            return 1
        if args.only in (None, "tokens"):
            data = make_tokens(name, path)
            (out / f"tokens_{name}.json").write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        if args.only in (None, "greedy"):
            data = make_greedy(name, path, args.seed)
            (out / f"greedy_{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))
        print(f"{name}: done", file=sys.stderr)
    if args.only == "vocab" or (args.only is None and not args.model):
        with tempfile.TemporaryDirectory() as tmp:
            data = make_pretypes(Path(args.models_dir) / MODELS["smollm2-135m"], Path(tmp))
            (out / "tokens_pretypes.json").write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
            data = make_synthetic_spm(Path(tmp))
            (out / "tokens_synthetic_spm.json").write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        print("vocabulary-only references: done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
