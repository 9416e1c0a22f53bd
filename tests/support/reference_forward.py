"""Straight-line float64 numpy forward pass of llama / qwen2 models: the oracle for the C++ forward.

This module owns the reference semantics of one forward pass over a set of tokens (no KV cache: every
token that a query may see is passed in the same call, with its position and sequence ids). It reads
weights as float32 arrays (as stored in the GGUF file, see synthetic.py) and computes in float64. It must
not be optimised, must not import pipeinfer, and must not model the engine's activation quantization
(ggml quantizes activations to q8_0 / q8_K for quantized matmuls; tests choose tolerances for that). The
one engine precision effect it can model, on request (attn_f16), is llama.cpp's f16 KV cache path.

Conventions (llama.cpp, src/llama-model.cpp build_llama / build_qwen2):
- matrices are (n_out, n_in) and y = x @ W.T;
- RMSNorm: x / sqrt(mean(x^2) + eps) * w;
- RoPE with theta_i = pos * freq_base^(-2i / n_rot), i < n_rot / 2, dims >= n_rot pass through;
  mode "normal" (llama: the converter permutes q/k rows) rotates pairs (2i, 2i+1), mode "neox" (qwen2)
  rotates pairs (i, i + n_rot/2);
- grouped-query attention: query head h reads kv head h // (n_head / n_head_kv); scale 1/sqrt(head_dim);
- visibility (llama-kv-cache set_input_kq_mask): token j is visible to token i iff the first sequence id
  of token i is among the sequence ids of token j and pos[j] <= pos[i] (seq_match="any": they share one);
- SwiGLU FFN: down(silu(gate(x)) * up(x)); the output head is output.weight or, when absent, token_embd.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

Weights = Mapping[str, np.ndarray]


def _unpack(model: Any) -> tuple[dict[str, Any], Weights]:
    if hasattr(model, "hparams") and hasattr(model, "weights"):
        return model.hparams, model.weights
    hparams, weights = model
    return hparams, weights


def rope_mode_of(hparams: Mapping[str, Any]) -> str:
    """'normal' or 'neox': hparams['rope_mode'] if present, else from the architecture."""
    if "rope_mode" in hparams:
        return hparams["rope_mode"]
    return {"llama": "normal", "qwen2": "neox"}[hparams["arch"]]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x: (n_tokens, n) f64, w: (n,) -> (n_tokens, n) f64."""
    ms = np.mean(x * x, axis=-1, keepdims=True)  # (n_tokens, 1)
    return x / np.sqrt(ms + eps) * w.astype(np.float64)


def rope(x: np.ndarray, pos: np.ndarray, n_rot: int, theta_base: float, mode: str) -> np.ndarray:
    """Rotary embedding. x: (n_tokens, n_heads, head_dim) f64, pos: (n_tokens,) -> same shape, f64."""
    if mode not in ("normal", "neox"):
        raise ValueError(f"rope mode must be 'normal' or 'neox', got {mode!r}")
    half = n_rot // 2
    inv_freq = theta_base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)  # (half,)
    angle = pos.astype(np.float64)[:, None] * inv_freq[None, :]  # (n_tokens, half)
    cos = np.cos(angle)[:, None, :]  # (n_tokens, 1, half)
    sin = np.sin(angle)[:, None, :]  # (n_tokens, 1, half)
    out = x.copy()  # (n_tokens, n_heads, head_dim)
    if mode == "normal":
        x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]  # (n_tokens, n_heads, half) each
        out[..., 0:n_rot:2] = x0 * cos - x1 * sin
        out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    else:
        x0, x1 = x[..., 0:half], x[..., half:n_rot]  # (n_tokens, n_heads, half) each
        out[..., 0:half] = x0 * cos - x1 * sin
        out[..., half:n_rot] = x0 * sin + x1 * cos
    return out


def visible_mask(
    positions: Sequence[int], seq_ids: Sequence[int | Sequence[int]] | None = None, seq_match: str = "first"
) -> np.ndarray:
    """(n_tokens, n_tokens) bool [query i, key j]: j visible to i.

    seq_match "first" (llama.cpp): the first sequence id of token i must be among the ids of token j;
    "any": tokens i and j share at least one sequence id. Both also require pos[j] <= pos[i].
    """
    if seq_match not in ("first", "any"):
        raise ValueError(f"seq_match must be 'first' or 'any', got {seq_match!r}")
    pos = np.asarray(positions, dtype=np.int64)  # (n_tokens,)
    n = len(pos)
    if seq_ids is None:
        seqs = [(0,)] * n
    else:
        if len(seq_ids) != n:
            raise ValueError(f"seq_ids has {len(seq_ids)} entries, expected one per token ({n})")
        seqs = [(int(s),) if isinstance(s, (int, np.integer)) else tuple(s) for s in seq_ids]
        if any(not s for s in seqs):
            raise ValueError("every token needs at least one sequence id")
    query = [s[:1] if seq_match == "first" else s for s in seqs]  # the sequences each query attends in
    same_seq = np.array(
        [[any(q in seqs[j] for q in query[i]) for j in range(n)] for i in range(n)], dtype=bool
    )  # (n_tokens, n_tokens)
    return same_seq & (pos[None, :] <= pos[:, None])


def _round_f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float64)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray, f16: bool = False,
              p_f16: bool = True) -> np.ndarray:
    """Grouped-query attention.

    q: (n_tokens, n_head, head_dim), k and v: (n_tokens, n_head_kv, head_dim), mask: (n_tokens, n_tokens)
    bool [query, key] -> (n_tokens, n_head * head_dim) f64.
    f16: model llama.cpp's default f16 KV cache path: K and V are stored as f16, and the f16 matmuls
    convert their other operand (q, then the softmax probabilities) to f16 (ggml vec_dot_type of f16).
    p_f16: with f16, round the probabilities too (llama.cpp, the engine's exact mode); False keeps them
    unrounded as the engine's default mode does (kernels/attention-fast.h).
    """
    if f16:
        q, k, v = _round_f16(q), _round_f16(k), _round_f16(v)
    n_tokens, n_head, head_dim = q.shape
    n_head_kv = k.shape[1]
    group = n_head // n_head_kv
    scale = 1.0 / np.sqrt(head_dim)
    out = np.zeros((n_tokens, n_head, head_dim))  # (n_tokens, n_head, head_dim)
    for h in range(n_head):
        kvh = h // group
        scores = np.einsum("qd,kd->qk", q[:, h, :], k[:, kvh, :]) * scale  # (n_tokens, n_tokens)
        scores = np.where(mask, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)  # (n_tokens, n_tokens)
        p /= p.sum(axis=-1, keepdims=True)
        if f16 and p_f16:
            p = _round_f16(p)
        out[:, h, :] = np.einsum("qk,kd->qd", p, v[:, kvh, :])
    return out.reshape(n_tokens, n_head * head_dim)


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y = x @ w.T. x: (n_tokens, n_in) f64, w: (n_out, n_in) -> (n_tokens, n_out) f64.

    np.einsum without optimize runs its own loops instead of multithreaded BLAS, which on a small loaded
    machine is orders of magnitude faster for these tiny shapes and independent of BLAS thread settings.
    """
    return np.einsum("ti,oi->to", x, w.astype(np.float64, copy=False))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def reference_forward(
    model: Any,
    tokens: Sequence[int],
    positions: Sequence[int] | None = None,
    *,
    seq_ids: Sequence[int | Sequence[int]] | None = None,
    seq_match: str = "first",
    attn_f16: bool = False,
    attn_p_f16: bool = True,
) -> np.ndarray:
    """Logits of every token.

    Args:
        model: a synthetic.SyntheticModel or a (hparams, weights) pair with the same keys.
        tokens: (n_tokens,) token ids.
        positions: (n_tokens,) positions; default 0..n_tokens-1.
        seq_ids: per token an int or a list/tuple of ints (its first id is the one it attends with);
            default: all tokens in sequence 0.
        seq_match: "first" (llama.cpp) or "any"; see visible_mask.
        attn_f16: round q, k, v and the attention probabilities to f16 as llama.cpp's f16 KV cache does
            (an f32-weight engine with an f16-precision cache then matches to about 1e-7 of the logit range).
        attn_p_f16: with attn_f16, round the probabilities too (the exact mode); False models the default
            mode's attention (q, k, v rounded, probabilities kept: kernels/attention-fast.h).

    Returns:
        (n_tokens, n_vocab) float64 logits.
    """
    hp, w = _unpack(model)
    n_vocab = w["token_embd.weight"].shape[0]
    tok = np.asarray(tokens, dtype=np.int64)  # (n_tokens,)
    n = len(tok)
    if n == 0:
        raise ValueError("reference_forward needs at least one token")
    if tok.min() < 0 or tok.max() >= n_vocab:
        raise ValueError(f"token ids must be in [0, {n_vocab}), got min {tok.min()} max {tok.max()}")
    pos = np.arange(n) if positions is None else np.asarray(positions, dtype=np.int64)  # (n_tokens,)
    if len(pos) != n:
        raise ValueError(f"positions has {len(pos)} entries, expected {n}")
    mask = visible_mask(pos, seq_ids, seq_match)  # (n_tokens, n_tokens) bool

    n_head, n_head_kv = hp["n_head"], hp["n_head_kv"]
    head_dim = hp["n_embd"] // n_head
    n_rot = hp.get("n_rot", head_dim)
    eps, theta, mode = hp["rms_eps"], hp["rope_theta"], rope_mode_of(hp)

    x = w["token_embd.weight"][tok].astype(np.float64)  # (n_tokens, n_embd)
    for il in range(hp["n_layer"]):
        p = f"blk.{il}."
        # attention block
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)  # (n_tokens, n_embd)
        q = linear(h, w[p + "attn_q.weight"])  # (n_tokens, n_head * head_dim)
        k = linear(h, w[p + "attn_k.weight"])  # (n_tokens, n_head_kv * head_dim)
        v = linear(h, w[p + "attn_v.weight"])  # (n_tokens, n_head_kv * head_dim)
        if p + "attn_q.bias" in w:
            q = q + w[p + "attn_q.bias"]
        if p + "attn_k.bias" in w:
            k = k + w[p + "attn_k.bias"]
        if p + "attn_v.bias" in w:
            v = v + w[p + "attn_v.bias"]
        q = rope(q.reshape(n, n_head, head_dim), pos, n_rot, theta, mode)  # (n_tokens, n_head, head_dim)
        k = rope(k.reshape(n, n_head_kv, head_dim), pos, n_rot, theta, mode)  # (n_tokens, n_head_kv, head_dim)
        v = v.reshape(n, n_head_kv, head_dim)  # (n_tokens, n_head_kv, head_dim)
        att = attention(q, k, v, mask, f16=attn_f16, p_f16=attn_p_f16)  # (n_tokens, n_head * head_dim)
        x = x + linear(att, w[p + "attn_output.weight"])  # (n_tokens, n_embd)
        # feed-forward block
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)  # (n_tokens, n_embd)
        gate = linear(h, w[p + "ffn_gate.weight"])  # (n_tokens, n_ff)
        up = linear(h, w[p + "ffn_up.weight"])  # (n_tokens, n_ff)
        x = x + linear(silu(gate) * up, w[p + "ffn_down.weight"])  # (n_tokens, n_embd)
    x = rms_norm(x, w["output_norm.weight"], eps)  # (n_tokens, n_embd)
    head = w["output.weight"] if "output.weight" in w else w["token_embd.weight"]  # (n_vocab, n_embd)
    return linear(x, head)  # (n_tokens, n_vocab)


def reference_greedy(model: Any, prompt_ids: Sequence[int], n: int, *, attn_f16: bool = False,
                     attn_p_f16: bool = True) -> list[int]:
    """The n tokens that greedy decoding (argmax, lowest id on ties) appends to prompt_ids."""
    ids = list(prompt_ids)
    out: list[int] = []
    for _ in range(n):
        logits = reference_forward(model, ids, attn_f16=attn_f16, attn_p_f16=attn_p_f16)  # (len(ids), n_vocab)
        nxt = int(np.argmax(logits[-1]))
        out.append(nxt)
        ids.append(nxt)
    return out


def load_gguf(path: Any, n_layer: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads a llama / qwen2 GGUF file into the (hparams, weights) form of reference_forward.

    Weights are dequantized with gguf.quants to float32 (n_out, n_in) arrays. With n_layer, only the first
    n_layer blocks are read (a truncated model, still with the final norm and head), which keeps real-model
    checks cheap.
    """
    import gguf

    reader = gguf.GGUFReader(path)

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    n_embd, n_head = field(f"{arch}.embedding_length"), field(f"{arch}.attention.head_count")
    hparams: dict[str, Any] = {
        "arch": arch,
        "n_layer": field(f"{arch}.block_count") if n_layer is None else n_layer,
        "n_embd": n_embd,
        "n_ff": field(f"{arch}.feed_forward_length"),
        "n_head": n_head,
        "n_head_kv": field(f"{arch}.attention.head_count_kv", n_head),
        "head_dim": n_embd // n_head,
        "n_rot": field(f"{arch}.rope.dimension_count", n_embd // n_head),
        "rope_theta": field(f"{arch}.rope.freq_base", 10000.0),
        "rms_eps": field(f"{arch}.attention.layer_norm_rms_epsilon"),
    }
    weights: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= hparams["n_layer"]:
            continue
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF ne order reversed: (n_out, n_in)
        weights[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
    hparams["n_vocab"] = weights["token_embd.weight"].shape[0]
    return hparams, weights
