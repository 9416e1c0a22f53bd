"""Writes the committed seed corpora of the fuzz targets (fuzz/run.sh): fuzz/corpus/gguf (small valid and
nearly valid GGUF files: tiny synthetic models of each architecture and weight type, a file with every
metadata value type) and fuzz/corpus/tokenizer (prompt texts). Deterministic; every seed stays under
64 KiB so the corpus remains small. Run from the repository root: python fuzz/make_seeds.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root / "tests" / "support"))

import gguf_bytes as gb  # noqa: E402
import synthetic  # noqa: E402


def tiny_models(out: Path) -> None:
    small_embd = {"token_embd.weight": "q4_0"}  # the (n_vocab, n_embd) table dominates the size
    cases = [
        ("llama", "f32", {"type_overrides": small_embd}), ("llama", "q8_0", {"type_overrides": small_embd}),
        ("llama", "q4_0", {"vocab": "spm"}), ("qwen2", "f16", {"type_overrides": small_embd}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for arch, wt, kw in cases:
            kw = {"n_layer": 1, "n_embd": 32, "n_ff": 32, "n_head": 2, "n_head_kv": 1, **kw}
            path = Path(tmp) / "m.gguf"
            synthetic.write_tiny_model(path, arch, weight_type=wt, **kw)
            data = path.read_bytes()
            if len(data) > 65536:
                raise SystemExit(f"seed {arch}-{wt} is {len(data)} bytes; keep seeds under 64 KiB")
            (out / f"tiny-{arch}-{wt}.gguf").write_bytes(data)


def every_value_type(out: Path) -> None:
    b = gb.GGUFBuilder()
    b.kv_u32("general.alignment", 32)
    b.kv_str("general.architecture", "llama")
    scalars = [(gb.T_U8, 7), (gb.T_I8, -7), (gb.T_U16, 700), (gb.T_I16, -700), (gb.T_U32, 70000),
               (gb.T_I32, -70000), (gb.T_F32, 1.5), (gb.T_BOOL, 1), (gb.T_U64, 2**40), (gb.T_I64, -2**40),
               (gb.T_F64, 2.25), (gb.T_STR, "text \u00e9")]
    for t, v in scalars:
        b.kv(f"test.scalar.{t}", t, v)
    b.kv("test.arr.u32", gb.T_ARR, [1, 2, 3], elem_type=gb.T_U32)
    b.kv("test.arr.f32", gb.T_ARR, [0.5, -1.0], elem_type=gb.T_F32)
    b.kv("test.arr.str", gb.T_ARR, ["a", "bc", ""], elem_type=gb.T_STR)
    b.tensor("w", [32, 2], gb.GGML_F32, data=bytes(256))
    b.tensor("q", [32], gb.GGML_Q8_0, data=bytes(34))
    b.tensor("k", [256], gb.GGML_Q4_K, data=bytes(144))
    (out / "every-value-type.gguf").write_bytes(b.build())


def prompts(out: Path) -> None:
    texts = {
        "ascii": "The capital of France is Paris.\n",
        "code": "def quicksort(xs):\n    return xs if len(xs) < 2 else xs\n\t\r\n",
        "unicode": "Grüße, 你好, こんにちは, 🙂🙂 ﷽ \u200d\u0301",
        "special": "<|im_start|>user\nhi<|im_end|>\n<s></s><unk>",
        "spaces": "   a  b   \n\n\n  ",
        "digits": "1234567890 3.14159 1e-5 0x1F",
    }
    for name, t in texts.items():
        (out / name).write_bytes(t.encode("utf-8"))
    (out / "invalid-utf8").write_bytes(b"ok \xff\xfe \xc3( \xed\xa0\x80 end")


def main() -> None:
    for target, writers in (("gguf", (tiny_models, every_value_type)), ("tokenizer", (prompts,))):
        out = root / "fuzz" / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        for w in writers:
            w(out)


if __name__ == "__main__":
    main()
