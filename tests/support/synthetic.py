"""Writer of tiny random-weight GGUF language models for tests (no downloads).

This module owns the synthetic test models: it writes a small llama- or qwen2-architecture GGUF file with
the metadata keys and tensor names that llama.cpp's converters write, a tiny but valid tokenizer (gpt2-style
byte-level BPE or SentencePiece-style "llama"), and returns the weights EXACTLY as stored in the file
(float32, after the quantize -> dequantize round trip of gguf-py), so a numpy oracle computes with the same
numbers as the engine reads. It must not run models (see reference_forward.py) and must not import pipeinfer.

Weight layout: every matrix in `SyntheticModel.weights` is a numpy array of shape (rows, cols) =
(n_out, n_in), i.e. the reverse of GGUF's ne order (ne0 = n_in is the contiguous row). A projection is
`y = x @ W.T`. Norm weights and biases are 1-D float32 and are always stored as F32.

Quantized types: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 are produced by quantizing Gaussian values with
gguf.quants. gguf-py cannot quantize K-quants, so for q2_k, q3_k, q4_k, q5_k, q6_k random but valid blocks
are built byte by byte (block layouts as in ggml-common.h: block_q2_K ... block_q6_K, QK_K = 256) with scales
chosen so that the weights are roughly centred with the requested standard deviation; the weights are then
taken from gguf.quants.dequantize of those bytes.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT
from gguf import TokenType

ARCHS = ("llama", "qwen2")

# weight_type name -> (GGML type, general.file_type written for a file whose matrices all have this type)
WEIGHT_TYPES: dict[str, tuple[QT, FT]] = {
    "f32": (QT.F32, FT.ALL_F32),
    "f16": (QT.F16, FT.MOSTLY_F16),
    "bf16": (QT.BF16, FT.MOSTLY_BF16),
    "q8_0": (QT.Q8_0, FT.MOSTLY_Q8_0),
    "q4_0": (QT.Q4_0, FT.MOSTLY_Q4_0),
    "q4_1": (QT.Q4_1, FT.MOSTLY_Q4_1),
    "q5_0": (QT.Q5_0, FT.MOSTLY_Q5_0),
    "q5_1": (QT.Q5_1, FT.MOSTLY_Q5_1),
    "q2_k": (QT.Q2_K, FT.MOSTLY_Q2_K),
    "q3_k": (QT.Q3_K, FT.MOSTLY_Q3_K_S),
    "q4_k": (QT.Q4_K, FT.MOSTLY_Q4_K_S),
    "q5_k": (QT.Q5_K, FT.MOSTLY_Q5_K_S),
    "q6_k": (QT.Q6_K, FT.MOSTLY_Q6_K),
}
K_QUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass
class SyntheticVocab:
    """Tokenizer data exactly as written to the tokenizer.ggml.* keys."""

    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str | None  # tokenizer.ggml.pre (BPE only)
    tokens: list[str]  # (n_vocab,) token texts
    token_types: list[int]  # (n_vocab,) gguf.TokenType values
    scores: list[float] | None  # (n_vocab,) SPM piece scores; None for BPE
    merges: list[str]  # BPE merges "a b" in priority order (first = highest); [] for SPM
    bos_id: int
    eos_id: int
    unk_id: int | None
    add_bos: bool  # tokenizer.ggml.add_bos_token
    add_space_prefix: bool  # tokenizer.ggml.add_space_prefix
    chat_template: str | None  # tokenizer.chat_template
    special_ids: dict[str, int] = field(default_factory=dict)  # control-token text -> id

    def byte_token_id(self, b: int) -> int:
        """Id of the single-byte token for byte value b (both vocab kinds keep bytes at 3 + b)."""
        return 3 + b


@dataclass
class SyntheticModel:
    """A written tiny model: hyperparameters, weights as stored (float32), tensor types and tokenizer.

    hparams keys: arch, name, n_layer, n_ctx_train, n_embd, n_ff, n_head, n_head_kv, head_dim, n_embd_kv,
    n_rot, rope_theta, rope_mode ("normal" for llama, "neox" for qwen2), rms_eps, n_vocab, tied_output,
    weight_type, file_type. Float values are the float32 values stored in the file.
    """

    path: Path
    hparams: dict[str, Any]
    weights: dict[str, np.ndarray]  # GGUF tensor name -> float32 (n_out, n_in) or (n,), read-only
    tensor_types: dict[str, str]  # GGUF tensor name -> weight type name ("f32", "q4_k", ...)
    vocab: SyntheticVocab

    @property
    def n_vocab(self) -> int:
        return self.hparams["n_vocab"]


# ---------------------------------------------------------------------------------------------------------
# tokenizer vocabularies


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2 byte-level mapping: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


# merge pairs in priority order, written in plain text (" " becomes "Ġ" in the byte-level alphabet);
# each side is a byte or the result of an earlier merge
_BPE_MERGES = [
    (" ", "t"), (" ", "a"), ("i", "n"), ("h", "e"), ("r", "e"), ("o", "n"), (" t", "he"), ("e", "r"),
    ("a", "t"), (" ", "s"), (" ", "o"), ("e", "n"), (" ", "w"), ("o", "r"), ("i", "s"), (" ", "c"),
    ("e", "s"), ("i", "t"), ("a", "n"), ("in", "g"), (" ", "b"), (" ", "f"), ("a", "l"), (" ", "p"),
    ("a", "r"), ("e", "d"), ("n", "d"), (" a", "nd"), (" o", "f"), (" ", "i"), (" i", "n"), (" t", "o"),
    ("o", "u"), ("l", "l"), (" ", "m"), ("t", "h"), (" ", "h"), (" ", "d"), ("l", "e"), ("s", "t"),
    (" ", " "), (" w", "h"), (" i", "s"), (" c", "at"),
]

_SPM_SINGLE = "▁" + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "0123456789" + ".,!?'-"
_SPM_MULTI = [
    "▁t", "▁a", "he", "in", "th", "er", "on", "▁the", "▁s", "▁o", "▁w", "re", "at", "en", "an", "▁an",
    "▁and", "nd", "ing", "▁i", "▁is", "▁c", "ll", "es", "or", "▁of", "▁in", "ou", "▁h", "▁b", "it",
    "is", "▁to", "▁f", "▁p", "▁m", "ed", "ar", "▁ca", "▁cat",
]


def _pad_vocab(tokens: list[str], types: list[int], scores: list[float] | None, multiple: int) -> None:
    while len(tokens) % multiple:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(int(TokenType.UNUSED))
        if scores is not None:
            scores.append(-1000.0)


def make_bpe_vocab(pre: str = "smollm", chat_template: str | None = CHATML_TEMPLATE) -> SyntheticVocab:
    """gpt2-style byte-level BPE: 3 control tokens, 256 byte tokens (id 3 + byte), merges, padding to 32."""
    b2u = gpt2_bytes_to_unicode()

    def enc(text: str) -> str:
        return "".join(b2u[b] for b in text.encode("utf-8"))

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + [b2u[b] for b in range(256)]
    types = [int(TokenType.CONTROL)] * 3 + [int(TokenType.NORMAL)] * 256
    merges = []
    for left, right in _BPE_MERGES:
        merges.append(f"{enc(left)} {enc(right)}")
        merged = enc(left + right)
        assert enc(left) in tokens and enc(right) in tokens and merged not in tokens, (left, right)
        tokens.append(merged)
        types.append(int(TokenType.NORMAL))
    _pad_vocab(tokens, types, None, 32)
    return SyntheticVocab(
        model="gpt2", pre=pre, tokens=tokens, token_types=types, scores=None, merges=merges,
        bos_id=0, eos_id=0, unk_id=None, add_bos=False, add_space_prefix=False, chat_template=chat_template,
        special_ids={s: i for i, s in enumerate(specials)},
    )


def make_spm_vocab(chat_template: str | None = None) -> SyntheticVocab:
    """SentencePiece-style: <unk>, <s>, </s>, <0x00>..<0xFF> (BYTE, id 3 + byte), scored pieces, padding."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)] + [int(TokenType.BYTE)] * 256
    scores = [0.0] * len(tokens)
    # multi-character pieces score higher the earlier they are listed; single characters score lowest
    for rank, piece in enumerate(_SPM_MULTI):
        tokens.append(piece)
        types.append(int(TokenType.NORMAL))
        scores.append(-float(rank + 1))
    for rank, piece in enumerate(_SPM_SINGLE):
        tokens.append(piece)
        types.append(int(TokenType.NORMAL))
        scores.append(-100.0 - rank)
    _pad_vocab(tokens, types, scores, 32)
    return SyntheticVocab(
        model="llama", pre=None, tokens=tokens, token_types=types, scores=scores, merges=[],
        bos_id=1, eos_id=2, unk_id=0, add_bos=True, add_space_prefix=True, chat_template=chat_template,
        special_ids={"<unk>": 0, "<s>": 1, "</s>": 2},
    )


# ---------------------------------------------------------------------------------------------------------
# weights


def _pack_k_scales(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Packs 8 six-bit scales and 8 six-bit mins per block into the 12-byte layout of block_q4_K/q5_K.

    sc, m: (n_blocks, 8) uint8 in [0, 63] -> (n_blocks, 12) uint8. Layout (ggml-quants.c get_scale_min_k4):
    bytes 0-3 = sc[0:4] | (sc[4:8] >> 4) << 6; bytes 4-7 = m[0:4] | (m[4:8] >> 4) << 6;
    bytes 8-11 = (sc[4:8] & 15) | (m[4:8] & 15) << 4.
    """
    out = np.empty((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return out


# per K-quant: byte offset of the f16 super-block scale d, of dmin (or None), and dmin / d
_K_SCALE_FIELDS = {
    QT.Q2_K: (80, 82, 1.0),
    QT.Q3_K: (108, None, 0.0),
    QT.Q4_K: (0, 2, 8.0),
    QT.Q5_K: (0, 2, 16.0),
    QT.Q6_K: (208, None, 0.0),
}


def _random_k_blocks(qtype: QT, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random valid K-quant blocks with d = 1 (and dmin = ratio * d): (n_blocks, type_size) uint8.

    Sub-block mins are set so that each sub-block is roughly centred on zero.
    """
    type_size = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == QT.Q2_K:  # scales[16] (4-bit scale | 4-bit min << 4), qs[64], d, dmin; q in 0..3
        sc = rng.integers(1, 11, size=(n_blocks, 16))
        m = np.rint(1.5 * sc).astype(np.int64)
        blocks[:, 0:16] = (sc | (m << 4)).astype(np.uint8)
    elif qtype == QT.Q4_K:  # d, dmin, scales[12], qs[128]; q in 0..15; dmin = 8 d
        sc = rng.integers(1, 64, size=(n_blocks, 8)).astype(np.uint8)
        m = np.rint(sc * 7.5 / 8.0).astype(np.uint8)
        blocks[:, 4:16] = _pack_k_scales(sc, m)
    elif qtype == QT.Q5_K:  # d, dmin, scales[12], qh[32], qs[128]; q in 0..31; dmin = 16 d
        sc = rng.integers(1, 64, size=(n_blocks, 8)).astype(np.uint8)
        m = np.rint(sc * 15.5 / 16.0).astype(np.uint8)
        blocks[:, 4:16] = _pack_k_scales(sc, m)
    elif qtype == QT.Q6_K:  # ql[128], qh[64], scales[16] int8, d; q in -32..31
        blocks[:, 192:208] = rng.integers(-64, 65, size=(n_blocks, 16)).astype(np.int8).view(np.uint8)
    # Q3_K: hmask[32], qs[64], scales[12] (6-bit signed), d: every byte pattern is valid and centred
    d_off, dmin_off, ratio = _K_SCALE_FIELDS[qtype]
    _set_f16(blocks, d_off, 1.0)
    if dmin_off is not None:
        _set_f16(blocks, dmin_off, ratio)
    return blocks


def _set_f16(blocks: np.ndarray, offset: int, value: float) -> None:
    blocks[:, offset : offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)


def _make_matrix(
    shape: tuple[int, int], std: float, wtype: str, rng: np.random.Generator
) -> tuple[np.ndarray, QT | None, np.ndarray]:
    """Random (n_out, n_in) matrix -> (payload for GGUFWriter.add_tensor, raw_dtype, float32 as stored)."""
    qtype = WEIGHT_TYPES[wtype][0]
    block_size = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[1] % block_size:
        raise ValueError(
            f"weight type {wtype} needs a row length (n_in) multiple of {block_size}, got {shape[1]} "
            f"for a matrix of shape {shape}"
        )
    if wtype in K_QUANTS:
        n_blocks = shape[0] * shape[1] // block_size
        blocks = _random_k_blocks(qtype, n_blocks, rng)  # (n_blocks, type_size) uint8 with d = 1
        unit = gguf.quants.dequantize(blocks, qtype)  # (n_blocks, 256) f32
        d = np.float16(std / float(unit.std()))
        d_off, dmin_off, ratio = _K_SCALE_FIELDS[qtype]
        _set_f16(blocks, d_off, float(d))
        if dmin_off is not None:
            _set_f16(blocks, dmin_off, float(d) * ratio)
        payload = blocks.reshape(shape[0], -1)  # (n_out, n_in / 256 * type_size) uint8
        return payload, qtype, gguf.quants.dequantize(payload, qtype)
    values = rng.normal(0.0, std, size=shape).astype(np.float32)  # (n_out, n_in) f32
    if wtype == "f32":
        return values, None, values
    if wtype == "f16":
        payload = values.astype(np.float16)
        return payload, None, payload.astype(np.float32)
    payload = gguf.quants.quantize(values, qtype)  # (n_out, n_in / block * type_size) uint8
    return payload, qtype, gguf.quants.dequantize(payload, qtype)


def _matrix_type(name: str, weight_type: str, type_overrides: dict[str, str] | None) -> str:
    for pattern, wtype in (type_overrides or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return wtype
    return weight_type


# ---------------------------------------------------------------------------------------------------------
# the writer


def write_tiny_model(
    path: str | Path,
    arch: str = "llama",
    *,
    n_layer: int = 2,
    n_embd: int | None = None,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int | None = None,
    n_ctx_train: int = 256,
    weight_type: str = "f32",
    tied_output: bool = True,
    rope_theta: float = 10000.0,
    rms_eps: float = 1e-5,
    seed: int = 0,
    vocab: str = "bpe",
    chat_template: str | bool | None = None,
    type_overrides: dict[str, str] | None = None,
    n_rot: int | None = None,
    alignment: int | None = None,
    name: str | None = None,
) -> SyntheticModel:
    """Writes a tiny random-weight model to `path` and returns what was written.

    Args:
        path: output .gguf file.
        arch: "llama" (rope mode normal, writes rope.dimension_count and vocab_size) or "qwen2" (rope mode
            neox, q/k/v biases).
        n_layer, n_head, n_head_kv, n_ctx_train: hyperparameters.
        n_embd, n_ff: default 64 and 160, or 256 and 256 when weight_type is a K-quant (rows of K-quants and
            the row of ffn_down, n_ff, must be multiples of 256; other block types need multiples of 32).
        weight_type: type of every matrix (token_embd, attention, FFN, output): one of WEIGHT_TYPES.
        tied_output: when False an output.weight tensor is written; when True the head is token_embd.
        rope_theta, rms_eps: stored as float32 ({arch}.rope.freq_base, {arch}.attention.layer_norm_rms_epsilon).
        seed: seed of all random weights (the same arguments give the same file).
        vocab: "bpe" (gpt2 byte-level, pre "smollm") or "spm" (SentencePiece "llama").
        chat_template: None = ChatML for bpe and none for spm; False = none; True = ChatML; a str = that.
        type_overrides: {glob over tensor names: weight type} for mixed files, e.g.
            {"blk.*.ffn_down.weight": "q6_k", "token_embd.weight": "q8_0"}; first match wins; 1-D tensors
            are always F32.
        n_rot: rope dimension count (default head_dim); written as {arch}.rope.dimension_count for llama
            always and for qwen2 only when given.
        alignment: when given, written as general.alignment (otherwise the key is absent = 32).
        name: general.name (default "synthetic-{arch}-{weight_type}").

    Returns:
        SyntheticModel with the weights as stored in the file (float32, read-only arrays).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {tuple(WEIGHT_TYPES)}, got {weight_type!r}")
    for pattern, wtype in (type_overrides or {}).items():
        if wtype not in WEIGHT_TYPES:
            raise ValueError(f"type_overrides[{pattern!r}] must be one of {tuple(WEIGHT_TYPES)}, got {wtype!r}")
    if vocab not in ("bpe", "spm"):
        raise ValueError(f"vocab must be 'bpe' or 'spm', got {vocab!r}")
    kquant = weight_type in K_QUANTS
    n_embd = n_embd if n_embd is not None else (256 if kquant else 64)
    n_ff = n_ff if n_ff is not None else (256 if kquant else 160)
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError(f"need n_embd % n_head == 0 and n_head % n_head_kv == 0, got {n_embd}, {n_head}, {n_head_kv}")
    head_dim = n_embd // n_head
    n_rot_eff = head_dim if n_rot is None else n_rot
    if head_dim % 2 or n_rot_eff % 2 or n_rot_eff > head_dim:
        raise ValueError(f"need even head_dim and even n_rot <= head_dim, got head_dim {head_dim}, n_rot {n_rot_eff}")
    n_embd_kv = head_dim * n_head_kv

    if chat_template is None:
        template = CHATML_TEMPLATE if vocab == "bpe" else None
    elif chat_template is True:
        template = CHATML_TEMPLATE
    elif chat_template is False:
        template = None
    else:
        template = chat_template
    voc = make_bpe_vocab(chat_template=template) if vocab == "bpe" else make_spm_vocab(chat_template=template)
    n_vocab = len(voc.tokens)

    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    tensor_types: dict[str, str] = {}
    payloads: list[tuple[str, np.ndarray, QT | None]] = []

    def matrix(tname: str, n_out: int, n_in: int, std: float) -> None:
        wtype = _matrix_type(tname, weight_type, type_overrides)
        payload, raw_dtype, stored = _make_matrix((n_out, n_in), std, wtype, rng)
        payloads.append((tname, payload, raw_dtype))
        weights[tname] = stored
        tensor_types[tname] = wtype

    def vector(tname: str, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=np.float32)
        payloads.append((tname, values, None))
        weights[tname] = values
        tensor_types[tname] = "f32"

    def norm_weight(tname: str) -> None:
        vector(tname, rng.uniform(0.8, 1.2, size=n_embd))  # (n_embd,) f32

    # std 1/sqrt(n_in) keeps activations, attention scores and logits O(1)
    s_embd, s_ff = 1.0 / np.sqrt(n_embd), 1.0 / np.sqrt(n_ff)
    matrix("token_embd.weight", n_vocab, n_embd, s_embd)  # (n_vocab, n_embd)
    for il in range(n_layer):
        p = f"blk.{il}."
        norm_weight(p + "attn_norm.weight")  # (n_embd,)
        matrix(p + "attn_q.weight", n_embd, n_embd, s_embd)  # (n_head * head_dim, n_embd)
        matrix(p + "attn_k.weight", n_embd_kv, n_embd, s_embd)  # (n_head_kv * head_dim, n_embd)
        matrix(p + "attn_v.weight", n_embd_kv, n_embd, s_embd)  # (n_head_kv * head_dim, n_embd)
        if arch == "qwen2":
            vector(p + "attn_q.bias", rng.normal(0.0, 0.3, size=n_embd))  # (n_embd,)
            vector(p + "attn_k.bias", rng.normal(0.0, 0.3, size=n_embd_kv))  # (n_embd_kv,)
            vector(p + "attn_v.bias", rng.normal(0.0, 0.3, size=n_embd_kv))  # (n_embd_kv,)
        matrix(p + "attn_output.weight", n_embd, n_embd, s_embd)  # (n_embd, n_head * head_dim)
        norm_weight(p + "ffn_norm.weight")  # (n_embd,)
        matrix(p + "ffn_gate.weight", n_ff, n_embd, s_embd)  # (n_ff, n_embd)
        matrix(p + "ffn_up.weight", n_ff, n_embd, s_embd)  # (n_ff, n_embd)
        matrix(p + "ffn_down.weight", n_embd, n_ff, s_ff)  # (n_embd, n_ff)
    norm_weight("output_norm.weight")  # (n_embd,)
    if not tied_output:
        matrix("output.weight", n_vocab, n_embd, s_embd)  # (n_vocab, n_embd)

    for arr in weights.values():
        arr.flags.writeable = False

    hparams: dict[str, Any] = {
        "arch": arch,
        "name": name or f"synthetic-{arch}-{weight_type}",
        "n_layer": n_layer,
        "n_ctx_train": n_ctx_train,
        "n_embd": n_embd,
        "n_ff": n_ff,
        "n_head": n_head,
        "n_head_kv": n_head_kv,
        "head_dim": head_dim,
        "n_embd_kv": n_embd_kv,
        "n_rot": n_rot_eff,
        "rope_theta": float(np.float32(rope_theta)),
        "rope_mode": "normal" if arch == "llama" else "neox",
        "rms_eps": float(np.float32(rms_eps)),
        "n_vocab": n_vocab,
        "tied_output": tied_output,
        "weight_type": weight_type,
        "file_type": int(WEIGHT_TYPES[weight_type][1]),
    }

    path = Path(path)
    w = gguf.GGUFWriter(path, arch)  # writes general.architecture
    w.add_type("model")
    w.add_name(hparams["name"])
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(rms_eps)
    w.add_file_type(hparams["file_type"])
    if arch == "llama":
        w.add_vocab_size(n_vocab)
    if arch == "llama" or n_rot is not None:
        w.add_rope_dimension_count(n_rot_eff)
    _add_tokenizer(w, voc)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for tname, payload, raw_dtype in payloads:
        w.add_tensor(tname, payload, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return SyntheticModel(path=path, hparams=hparams, weights=weights, tensor_types=tensor_types, vocab=voc)


def _add_tokenizer(w: gguf.GGUFWriter, voc: SyntheticVocab) -> None:
    if voc.model == "gpt2":
        w.add_add_space_prefix(voc.add_space_prefix)
    w.add_add_bos_token(voc.add_bos)
    w.add_tokenizer_model(voc.model)
    if voc.pre is not None:
        w.add_tokenizer_pre(voc.pre)
    w.add_token_list(voc.tokens)
    if voc.scores is not None:
        w.add_token_scores(voc.scores)
    w.add_token_types(voc.token_types)
    if voc.merges:
        w.add_token_merges(voc.merges)
    w.add_bos_token_id(voc.bos_id)
    w.add_eos_token_id(voc.eos_id)
    if voc.unk_id is not None:
        w.add_unk_token_id(voc.unk_id)
    if voc.model == "llama":
        w.add_add_space_prefix(voc.add_space_prefix)
    if voc.chat_template is not None:
        w.add_chat_template(voc.chat_template)
