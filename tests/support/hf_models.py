"""Tiny random Hugging Face transformers models of every supported architecture, and their GGUF files.

This module owns (1) building a small randomly initialised `transformers` model of an architecture
(CPU torch, float32, eager attention, a fixed seed), (2) writing it to GGUF with the `gguf` package the
way llama.cpp's convert_hf_to_gguf.py lays it out (tensor names, the llama q/k row permutation, fused
Phi-3 projections kept fused, Gemma's +1 on its norm weights, experts stacked into 3-d tensors, Llama 3
rope frequency factors), with f32, f16 or q8_0 matrices, and (3) the model's own logits and greedy
tokens, computed with the weights exactly as stored in the file (dequantized), so that a comparison
with the engine measures arithmetic, not storage. The vocabulary is the synthetic byte-level BPE of
synthetic.py (320 tokens). No download: everything is made here from a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import gguf
import numpy as np
import torch
import transformers

from synthetic import _add_tokenizer, make_bpe_vocab

N_VOCAB = 320
WEIGHT_TYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
                "q8_0": gguf.GGMLQuantizationType.Q8_0}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
COMMON = dict(vocab_size=N_VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
              bos_token_id=None, eos_token_id=None, pad_token_id=None)


def _configs() -> Dict[str, Tuple[str, Callable[[], transformers.PretrainedConfig]]]:
    """name -> (GGUF architecture, config factory)."""
    T = transformers
    llama3_rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    return {
        "llama": ("llama", lambda: T.LlamaConfig(**COMMON)),
        "llama3": ("llama", lambda: T.LlamaConfig(**{**COMMON, "rope_parameters": llama3_rope})),
        "mistral": ("llama", lambda: T.MistralConfig(**{**COMMON, "sliding_window": 12})),
        "mixtral": ("llama", lambda: T.MixtralConfig(**COMMON, num_local_experts=6, num_experts_per_tok=2)),
        "qwen2": ("qwen2", lambda: T.Qwen2Config(**COMMON)),
        "qwen2moe": ("qwen2moe", lambda: T.Qwen2MoeConfig(**COMMON, moe_intermediate_size=64,
                                                          shared_expert_intermediate_size=96, num_experts=6,
                                                          num_experts_per_tok=2, norm_topk_prob=False)),
        "qwen3": ("qwen3", lambda: T.Qwen3Config(**COMMON, head_dim=32)),
        "qwen3moe": ("qwen3moe", lambda: T.Qwen3MoeConfig(**COMMON, head_dim=32, moe_intermediate_size=64,
                                                          num_experts=6, num_experts_per_tok=2, norm_topk_prob=True)),
        "phi3": ("phi3", lambda: T.Phi3Config(**COMMON)),
        "gemma3": ("gemma3", lambda: T.Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 7, "num_key_value_heads": 1},
                                                        head_dim=32, query_pre_attn_scalar=32, sliding_window=12,
                                                        hidden_activation="gelu_pytorch_tanh",
                                                        final_logit_softcapping=None, attn_logit_softcapping=None)),
    }


ARCHS = list(_configs())


@dataclass
class TinyHF:
    """A tiny transformers model whose weights equal what `path` stores."""

    name: str
    arch: str  # GGUF general.architecture
    model: transformers.PreTrainedModel
    path: Path
    weight_type: str

    @torch.no_grad()
    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), n_vocab) float32 logits of every position."""
        out = self.model(torch.tensor([list(ids)], dtype=torch.long)).logits
        return out[0].float().numpy()

    @torch.no_grad()
    def greedy(self, ids: Sequence[int], n: int, banned: Sequence[int] = ()) -> List[int]:
        """n greedy tokens after ids (the first maximum; `banned` ids never chosen), full recompute."""
        seq = list(ids)
        for _ in range(n):
            row = self.model(torch.tensor([seq], dtype=torch.long)).logits[0, -1].clone()
            row[list(banned)] = -math.inf
            seq.append(int(torch.argmax(row)))
        return seq[len(ids):]


def _randomize(model: transformers.PreTrainedModel, name: str, gen: torch.Generator) -> None:
    """Weights with O(1) activations: matrices N(0, 1/n_in), norms near their identity, routers sharp."""
    for pname, p in model.named_parameters():
        if p.ndim == 1:
            base = 0.0 if name == "gemma3" else 1.0  # gemma's norms multiply by (1 + w)
            p.copy_(base + 0.2 * (torch.rand(p.shape, generator=gen) - 0.5))
        else:
            std = (3.0 if pname.endswith("mlp.gate.weight") else 1.0) / math.sqrt(p.shape[-1])
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF (half-split) rotary rows -> GGUF llama (interleaved pairs): convert_hf_to_gguf's permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(name: str, model: transformers.PreTrainedModel) -> List[Tuple[str, np.ndarray]]:
    """GGUF (name, float32 array in HF (n_out, n_in) / (n_expert, n_out, n_in) orientation) pairs."""
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    gemma = name == "gemma3"
    plus = (lambda a: a + 1.0) if gemma else (lambda a: a)
    out = [("token_embd.weight", sd["model.embed_tokens.weight"]), ("output_norm.weight", plus(sd["model.norm.weight"]))]
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        out.append(("output.weight", sd["lm_head.weight"]))
    for il in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{il}.", f"blk.{il}."
        attn, mlp = p + "self_attn.", p + "mlp."
        out.append((b + "attn_norm.weight", plus(sd[p + "input_layernorm.weight"])))
        if name == "phi3":
            out.append((b + "attn_qkv.weight", sd[attn + "qkv_proj.weight"]))
        else:
            q, k = sd[attn + "q_proj.weight"], sd[attn + "k_proj.weight"]
            if name in ("llama", "llama3", "mistral", "mixtral"):
                q, k = _permute_rope(q, cfg.num_attention_heads), _permute_rope(k, cfg.num_key_value_heads)
            out += [(b + "attn_q.weight", q), (b + "attn_k.weight", k), (b + "attn_v.weight", sd[attn + "v_proj.weight"])]
            for t in ("q", "k", "v"):
                if attn + f"{t}_proj.bias" in sd:
                    out.append((b + f"attn_{t}.bias", sd[attn + f"{t}_proj.bias"]))
            if attn + "q_norm.weight" in sd:
                out += [(b + "attn_q_norm.weight", plus(sd[attn + "q_norm.weight"])),
                        (b + "attn_k_norm.weight", plus(sd[attn + "k_norm.weight"]))]
        out.append((b + "attn_output.weight", sd[attn + "o_proj.weight"]))
        if gemma:
            out += [(b + "post_attention_norm.weight", plus(sd[p + "post_attention_layernorm.weight"])),
                    (b + "ffn_norm.weight", plus(sd[p + "pre_feedforward_layernorm.weight"])),
                    (b + "post_ffw_norm.weight", plus(sd[p + "post_feedforward_layernorm.weight"]))]
        else:
            out.append((b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]))
        if mlp + "experts.down_proj" in sd:
            gate_up = sd[mlp + "experts.gate_up_proj"]  # (n_expert, 2 ff, n_embd): gate rows, then up rows
            ff = gate_up.shape[1] // 2
            out += [(b + "ffn_gate_inp.weight", sd[mlp + "gate.weight"]), (b + "ffn_gate_exps.weight", gate_up[:, :ff]),
                    (b + "ffn_up_exps.weight", gate_up[:, ff:]), (b + "ffn_down_exps.weight", sd[mlp + "experts.down_proj"])]
            if mlp + "shared_expert.down_proj.weight" in sd:
                se = mlp + "shared_expert."
                out += [(b + "ffn_gate_shexp.weight", sd[se + "gate_proj.weight"]),
                        (b + "ffn_up_shexp.weight", sd[se + "up_proj.weight"]),
                        (b + "ffn_down_shexp.weight", sd[se + "down_proj.weight"]),
                        (b + "ffn_gate_inp_shexp.weight", sd[mlp + "shared_expert_gate.weight"])]
        elif name == "phi3":
            out += [(b + "ffn_up.weight", sd[mlp + "gate_up_proj.weight"]), (b + "ffn_down.weight", sd[mlp + "down_proj.weight"])]
        else:
            out += [(b + "ffn_gate.weight", sd[mlp + "gate_proj.weight"]), (b + "ffn_up.weight", sd[mlp + "up_proj.weight"]),
                    (b + "ffn_down.weight", sd[mlp + "down_proj.weight"])]
    if name == "llama3":
        # rope_freqs: the divisors ggml applies to each rotation frequency (base inv_freq / scaled inv_freq)
        inv = model.model.rotary_emb.inv_freq.double().numpy()
        dim = cfg.hidden_size // cfg.num_attention_heads
        base = 1.0 / (cfg.rope_parameters["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        out.append(("rope_freqs.weight", (base / inv).astype(np.float32)))
    return out


def _store(tname: str, arr: np.ndarray, weight_type: str) -> Tuple[np.ndarray, "gguf.GGMLQuantizationType | None", np.ndarray]:
    """(payload, raw dtype or None, the float32 values the file holds) of one tensor. Vectors and the
    MoE routers stay f32, as llama.cpp's quantizer keeps them (ffn_gate_inp*)."""
    if arr.ndim == 1 or weight_type == "f32" or "ffn_gate_inp" in tname:
        a = np.ascontiguousarray(arr, np.float32)
        return a, None, a
    if weight_type == "f16":
        a = np.ascontiguousarray(arr, np.float16)
        return a, None, a.astype(np.float32)
    qt = WEIGHT_TYPES[weight_type]
    payload = gguf.quants.quantize(np.ascontiguousarray(arr, np.float32), qt)
    return payload, qt, gguf.quants.dequantize(payload, qt).reshape(arr.shape).astype(np.float32)


def _write_hparams(w: gguf.GGUFWriter, name: str, cfg: transformers.PretrainedConfig, weight_type: str) -> None:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = cfg.rope_parameters
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(int(FILE_TYPES[weight_type]))
    if name == "gemma3":
        w.add_rope_freq_base(rope["full_attention"]["rope_theta"])
        w.add_float32("gemma3.rope.freq_base_swa", rope["sliding_attention"]["rope_theta"])
        w.add_sliding_window(cfg.sliding_window)
    else:
        w.add_rope_freq_base(rope["rope_theta"])
    if name == "mistral":
        w.add_sliding_window(cfg.sliding_window)
    if w.arch == "llama":
        w.add_vocab_size(cfg.vocab_size)
    n_expert = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    if n_expert:
        w.add_expert_count(n_expert)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        if hasattr(cfg, "moe_intermediate_size"):
            w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        if getattr(cfg, "shared_expert_intermediate_size", 0):
            w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)


def build(name: str, path: Path, weight_type: str = "f32", seed: int = 0) -> TinyHF:
    """Builds the tiny model `name` (see ARCHS), writes it to `path` as GGUF and loads the stored
    (rounded or dequantized) weights back into the transformers model."""
    arch, make_cfg = _configs()[name]
    cfg = make_cfg()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
        _randomize(model, name, gen)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_type("model")
    w.add_name(f"tiny-hf-{name}-{weight_type}")
    _write_hparams(w, name, cfg, weight_type)
    _add_tokenizer(w, make_bpe_vocab())
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    stored: Dict[str, np.ndarray] = {}
    for tname, arr in _tensors(name, model):
        payload, raw, values = _store(tname, arr, weight_type)
        w.add_tensor(tname, payload, raw_dtype=raw)
        stored[tname] = values
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if weight_type != "f32":
        _load_stored(name, model, stored)
    return TinyHF(name=name, arch=arch, model=model, path=Path(path), weight_type=weight_type)


def _load_stored(name: str, model: transformers.PreTrainedModel, stored: Dict[str, np.ndarray]) -> None:
    """Puts the file's values back into the transformers model (inverse of _tensors)."""
    back = {}
    for gname, hname in _name_pairs(name, model):
        back[hname] = stored[gname]
    sd = model.state_dict()
    cfg = model.config
    with torch.no_grad():
        for hname, value in back.items():
            if hname.endswith(("q_proj.weight", "k_proj.weight")) and name in ("llama", "llama3", "mistral", "mixtral"):
                n = cfg.num_attention_heads if hname.endswith("q_proj.weight") else cfg.num_key_value_heads
                value = _unpermute_rope(value, n)
            if name == "gemma3" and value.ndim == 1:
                value = value - 1.0
            sd[hname].copy_(torch.from_numpy(np.ascontiguousarray(value)))
        for il in range(cfg.num_hidden_layers):
            gu = f"model.layers.{il}.mlp.experts.gate_up_proj"
            if gu in sd:
                sd[gu].copy_(torch.from_numpy(np.concatenate([stored[f"blk.{il}.ffn_gate_exps.weight"],
                                                              stored[f"blk.{il}.ffn_up_exps.weight"]], axis=1)))


def _unpermute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _name_pairs(name: str, model: transformers.PreTrainedModel) -> List[Tuple[str, str]]:
    """(GGUF name, HF state-dict name) of every tensor stored one to one (experts are handled apart)."""
    pairs = []
    hf_of = {
        "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_layer = {
        "attn_norm.weight": "input_layernorm.weight", "attn_qkv.weight": "self_attn.qkv_proj.weight",
        "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
        "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias",
        "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
        "attn_output.weight": "self_attn.o_proj.weight",
        "ffn_norm.weight": "pre_feedforward_layernorm.weight" if name == "gemma3" else "post_attention_layernorm.weight",
        "post_attention_norm.weight": "post_attention_layernorm.weight",
        "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.gate_up_proj.weight" if name == "phi3" else "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight", "ffn_gate_inp.weight": "mlp.gate.weight",
        "ffn_down_exps.weight": "mlp.experts.down_proj", "ffn_gate_shexp.weight": "mlp.shared_expert.gate_proj.weight",
        "ffn_up_shexp.weight": "mlp.shared_expert.up_proj.weight",
        "ffn_down_shexp.weight": "mlp.shared_expert.down_proj.weight",
        "ffn_gate_inp_shexp.weight": "mlp.shared_expert_gate.weight",
    }
    names = {t for t, _ in _tensors(name, model)}
    for g, h in hf_of.items():
        if g in names:
            pairs.append((g, h))
    for il in range(model.config.num_hidden_layers):
        for g, h in per_layer.items():
            if f"blk.{il}.{g}" in names:
                pairs.append((f"blk.{il}.{g}", f"model.layers.{il}.{h}"))
    return pairs


class LlamaCppRounding:
    """Context manager: the transformers model rounds where llama.cpp's arithmetic rounds.

    llama.cpp (and this engine) keep K and V in an f16 cache, round Q to f16 for the f16 K·Q product
    (after its scaling for the architectures that scale Q: gemma3, phi3), round the softmax
    probabilities to f16 for the P·V product, and (GGML_GELU_FP16) look GELU up in an f16 table. Inside
    this context the model's eager attention and Gemma's GELU do the same, so what remains between the
    two is summation order: a much tighter comparison than against plain f32 transformers.
    """

    PRESCALED = ("gemma3", "phi3")

    def __init__(self, tiny: TinyHF) -> None:
        self.tiny = tiny
        self.module = __import__(type(tiny.model).__module__, fromlist=["eager_attention_forward"])
        self.saved: list = []

    def __enter__(self) -> "LlamaCppRounding":
        import inspect

        orig = self.module.eager_attention_forward
        sig = inspect.signature(orig)
        prescaled = self.tiny.name in self.PRESCALED
        repeat_kv = self.module.repeat_kv

        def f16(t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.float16).to(torch.float32)

        def attention(*args, **kwargs):
            a = sig.bind(*args, **kwargs)
            a.apply_defaults()
            module, query, mask = a.arguments["module"], a.arguments["query"], a.arguments["attention_mask"]
            scaling = a.arguments["scaling"] if a.arguments["scaling"] is not None else module.head_dim ** -0.5
            k = f16(repeat_kv(a.arguments["key"], module.num_key_value_groups))
            v = f16(repeat_kv(a.arguments["value"], module.num_key_value_groups))
            q, s = (f16(query * scaling), 1.0) if prescaled else (f16(query), scaling)
            w = torch.matmul(q, k.transpose(2, 3)) * s
            if mask is not None:
                w = w + mask
            w = f16(torch.nn.functional.softmax(w, dim=-1, dtype=torch.float32))
            return torch.matmul(w, v).transpose(1, 2).contiguous(), w

        self.saved.append((self.module, "eager_attention_forward", orig))
        self.module.eager_attention_forward = attention
        if self.tiny.name == "gemma3":
            for layer in self.tiny.model.model.layers:
                self.saved.append((layer.mlp, "act_fn", layer.mlp.act_fn))
                layer.mlp.act_fn = _GeluF16Table()
        return self

    def __exit__(self, *exc) -> None:
        for obj, attr, value in reversed(self.saved):
            setattr(obj, attr, value)
        self.saved.clear()


class _GeluF16Table(torch.nn.Module):
    """ggml's GELU with GGML_GELU_FP16: f16(gelu_tanh(f16(x))), x <= -10 -> 0, x >= 10 -> x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xh = x.to(torch.float16).to(torch.float32)
        g = torch.nn.functional.gelu(xh, approximate="tanh").to(torch.float16).to(torch.float32)
        return torch.where(x <= -10.0, torch.zeros_like(x), torch.where(x >= 10.0, x, g))


@torch.no_grad()
def router_margin(tiny: TinyHF, ids: Sequence[int], first_layer: int = 1) -> float:
    """How far the routing is from flipping: the smallest gap, over the layers from `first_layer` and
    every position, between the router logit of the last chosen expert and that of the best expert
    left out, relative to the largest router logit of the row (inf for a dense model). Layer 0 routes
    the token embeddings, which the file stores exactly, so only later layers can flip when the
    engine's rounding differs from transformers'."""
    outs: List[torch.Tensor] = []
    layers = [layer for layer in tiny.model.model.layers if hasattr(layer.mlp, "experts")]
    hooks = [layer.mlp.gate.register_forward_hook(lambda mod, inp, out: outs.append(inp[0] @ mod.weight.T))
             for layer in layers[first_layer:]]
    if not layers:
        return math.inf
    try:
        tiny.logits(ids)
    finally:
        for h in hooks:
            h.remove()
    k = tiny.model.config.num_experts_per_tok
    margin = math.inf
    for logits in outs:
        z = logits.reshape(-1, logits.shape[-1]).float()
        top = torch.sort(z, dim=-1, descending=True).values
        margin = min(margin, float(((top[:, k - 1] - top[:, k]) / z.abs().max(dim=-1).values).min()))
    return margin
