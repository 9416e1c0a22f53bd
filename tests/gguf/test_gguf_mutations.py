"""Generated malformed files: every count, length, type id, offset and section boundary of a tiny
synthetic model (and of a real model's header) mutated one at a time. Each mutant must either be
refused with a typed error (pipeinfer.PipeinferError: GGUFError, ModelError, ...) or load and give
exactly the original model's logits: never a crash, a hang, another exception type or a silently
different answer. The field map comes from tests/support/gguf_walk.py."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import gguf_walk as gw
import pipeinfer
from pipeinfer import _core

TOKENS = [1, 5, 9, 2]
U64_MAX = 2**64 - 1


def _logits(path: Path) -> np.ndarray:
    p = _core.Pipeline(str(path), n_ctx=16)
    n = len(TOKENS)
    out = p.decode(np.asarray(TOKENS, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
                   np.ones(n, np.uint8)).copy()
    p.close()
    return out


def _value_mutations(f: gw.Field, old: int) -> list:
    if f.kind in ("n_tensors", "n_kv", "arr_count"):
        return [0, old - 1, old + 1, old * 2, U64_MAX, 2**62]
    if f.kind in ("key_len", "str_len"):
        return [0, old - 1, old + 1, U64_MAX, 2**40]
    if f.kind in ("value_type", "elem_type"):
        return [t for t in (0, 4, 5, 6, 7, 8, 9, 10, 12, 13, 255) if t != old]
    if f.kind == "tensor_type":
        # f16 <-> bf16 keeps every byte in place: that mutant is another valid model, not a broken file.
        same_size = {1: 30, 30: 1}.get(old)
        return [t for t in (0, 1, 2, 3, 8, 12, 14, 26, 30, 39, 2**31) if t not in (old, same_size)]
    if f.kind == "n_dims":
        return [0, old - 1, old + 1, 5, 2**32 - 1]
    if f.kind == "dim":
        return [0, 1, old + 1, old * 2, 2**63 - 1, U64_MAX]
    if f.kind == "tensor_offset":
        return [old + 1, old + 32, old - 32, old + 2**20, U64_MAX - 31]
    return []


def mutants(blob: bytes):
    """(id, mutated blob) for every structural field and section boundary of blob."""
    fields = gw.walk(blob)
    seen = Counter()
    for f in fields:
        if f.size == 0:  # a boundary: cut the file there (and one byte into the next section)
            for cut in (f.offset, f.offset + 1):
                if 0 < cut < len(blob):
                    key = f"cut@{f.kind}:{f.what}+{cut - f.offset}"
                    seen[key] += 1
                    yield f"{key}#{seen[key]}", blob[:cut]
            continue
        old = gw.read(blob, f)
        for v in _value_mutations(f, old):
            key = f"{f.kind}:{f.what}={v}"
            seen[key] += 1
            yield f"{key}#{seen[key]}", gw.patch(blob, f, v)
    # Duplicates: the first KV entry and the first tensor info written twice (counts raised to match).
    kv_end = next(f for f in fields if f.kind == "kv_end")
    first_kv = blob[24:kv_end.offset]
    dup = gw.patch(blob[:kv_end.offset] + first_kv + blob[kv_end.offset:], fields[1], gw.read(blob, fields[1]) + 1)
    yield "duplicate-first-kv", dup
    ti_start = next(f for f in fields if f.kind == "str_len" and f.offset >= [x for x in fields if x.kind == "kv_end"][-1].offset)
    ti_end = next(f for f in fields if f.kind == "tensor_info_end")
    info = blob[ti_start.offset:ti_end.offset]
    dup = gw.patch(blob[:ti_end.offset] + info + blob[ti_end.offset:], fields[0], gw.read(blob, fields[0]) + 1)
    yield "duplicate-first-tensor", dup
    yield "trailing-bytes", blob + b"\0" * 32


def _check_one(blob: bytes, path: Path, want: np.ndarray) -> str:
    """'parse-error', 'load-error' or 'same-output'; raises AssertionError for anything else."""
    try:
        _core.GGUFFile.from_bytes(blob)
    except pipeinfer.GGUFError:
        return "parse-error"
    path.write_bytes(blob)
    try:
        got = _logits(path)
    except pipeinfer.PipeinferError:
        return "load-error"
    assert got.shape == want.shape and np.array_equal(got, want), "loads but gives other logits"
    return "same-output"


def _run_all(cases, path: Path, want: np.ndarray, deadline_s: float = 600.0) -> Counter:
    outcomes: Counter = Counter()
    failures: list = []

    def work():
        for case_id, blob in cases:
            try:
                outcomes[_check_one(blob, path, want)] += 1
            except AssertionError as e:
                failures.append(f"{case_id}: {e}")
            except Exception as e:  # noqa: BLE001 - an untyped error is a finding
                failures.append(f"{case_id}: {type(e).__name__}: {e}")

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(deadline_s)
    assert not t.is_alive(), f"a mutant hung (after {sum(outcomes.values())} cases)"
    assert not failures, "\n".join(failures[:20])
    return outcomes


@pytest.mark.parametrize("weight_type", ["q8_0", "f16"])
def test_every_structural_mutation_of_a_tiny_model_is_refused_or_harmless(tiny_model, tmp_path, weight_type):
    src, _ = tiny_model("llama", weight_type, n_layer=2)
    blob = src.read_bytes()
    want = _logits(src)
    cases = list(mutants(blob))
    assert len(cases) > 300
    outcomes = _run_all(cases, tmp_path / "mutant.gguf", want)
    assert sum(outcomes.values()) == len(cases)
    assert outcomes["parse-error"] > len(cases) // 2


@pytest.mark.realmodel
def test_mutations_of_a_real_model_header_are_refused(real_model_path, tmp_path):
    """The real SmolLM2 header (large string arrays, 30 layers), every 7th structural field mutated;
    the parser alone runs (loading 100 MB per mutant would take too long). A changed tensor type,
    dimension, dimension count or offset must never parse: with dense packing every byte is accounted
    for (the values tried never swap two types of the same size). Each mutant is written into one copy
    of the file in place and parsed from the mapping, so no mutant copies the 100 MB."""
    src = real_model_path("smollm2-135m")
    blob = src.read_bytes()
    fields = gw.walk(blob)
    path = tmp_path / "mutant.gguf"
    path.write_bytes(blob)
    picked = [f for f in fields if f.size and f.kind != "value"][::7]
    n_ok = n_err = 0
    with open(path, "r+b") as out:
        for f in picked:
            for v in _value_mutations(f, gw.read(blob, f))[:3]:
                out.seek(f.offset)
                out.write(gw.patch(blob[f.offset:f.offset + f.size], gw.Field(f.kind, f.what, 0, f.size), v))
                out.flush()
                try:
                    _core.GGUFFile(str(path))
                except pipeinfer.GGUFError:
                    n_err += 1
                else:
                    n_ok += 1
                    assert f.kind not in ("tensor_type", "dim", "tensor_offset", "n_dims"), f"{f} = {v} was accepted"
                finally:
                    out.seek(f.offset)
                    out.write(blob[f.offset:f.offset + f.size])
                    out.flush()
    assert n_err > 0 and n_err + n_ok >= 100
