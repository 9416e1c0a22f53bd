"""atheris target for the tokenizer (fuzz/run.sh tokenizer MINUTES; `pip install atheris`).

Each input picks a vocabulary (the byte-level BPE and SentencePiece vocabularies of the committed seed
models, and the real models of the cache when present), flags and a text, and checks:
  - encode() returns ids inside the vocabulary and raises nothing for any str;
  - byte-level BPE loses nothing: detokenize(encode(text)) == text (no special parsing, no cleanup),
    for vocabularies that have a token for each of the 256 bytes (llama.cpp, and so pipeinfer, drops a
    byte that has none, as SmolLM2's vocabulary lacks some);
  - detokenize/decode accept every id sequence inside the vocabulary;
  - the stream decoder's pieces concatenate to the UTF-8 decoding of the joined token pieces.
Slow inputs are findings too (libFuzzer's -timeout). Runs on the pipeinfer importable from sys.path.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from pipeinfer import _core
    from pipeinfer import _pretokenize  # noqa: F401  (instrumented: the split regexes' driver)
    from pipeinfer.tokenizer import Tokenizer

HERE = Path(__file__).resolve().parent


def _vocab_files() -> list[Path]:
    seeds = [HERE / "corpus" / "gguf" / "tiny-llama-q8_0.gguf", HERE / "corpus" / "gguf" / "tiny-llama-q4_0.gguf"]
    cache = Path(os.environ.get("PIPEINFER_CACHE_DIR", Path.home() / ".cache" / "pipeinfer" / "models"))
    real = sorted(cache.glob("*.gguf")) if cache.is_dir() else []
    return seeds + real


TOKENIZERS = [Tokenizer.from_metadata(_core.GGUFFile(str(p)).metadata()) for p in _vocab_files()]
# Byte-level BPE vocabularies with a token for every byte: for those, encoding is lossless.
LOSSLESS = {id(t) for t in TOKENIZERS if t.vocab_type == "bpe" and all(c in t._ids for c in _pretokenize.BYTE_TO_CHAR)}


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    tok = TOKENIZERS[fdp.ConsumeIntInRange(0, len(TOKENIZERS) - 1)]
    add_special, parse_special = fdp.ConsumeBool(), fdp.ConsumeBool()
    mode = fdp.ConsumeIntInRange(0, 1)
    if mode == 0:
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        ids = tok.encode(text, add_special=add_special, parse_special=parse_special)
        if any(not 0 <= t < tok.n_vocab for t in ids):
            raise AssertionError(f"encode gave an id outside the vocabulary: {ids}")
        if id(tok) in LOSSLESS and not parse_special and not tok.clean_spaces:
            plain = tok.encode(text, add_special=False, parse_special=False)
            back = tok.detokenize(plain)
            if back != text.encode("utf-8"):
                raise AssertionError(f"BPE round trip lost text: {text!r} -> {plain} -> {back!r}")
    else:
        n = fdp.ConsumeIntInRange(0, 64)
        ids = [fdp.ConsumeIntInRange(0, tok.n_vocab - 1) for _ in range(n)]
        skip = fdp.ConsumeBool()
        tok.decode(ids, skip_special=skip)
        sd = tok.stream_decoder(skip_special=skip)
        streamed = "".join(sd.feed(t) for t in ids) + sd.flush()
        joined = b"".join(tok.token_to_piece(t, not skip) for t in ids).decode("utf-8", errors="replace")
        if streamed != joined:
            raise AssertionError(f"stream decoder differs: {ids} -> {streamed!r}, joined pieces {joined!r}")


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
