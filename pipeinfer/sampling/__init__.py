"""How a generation chooses its tokens (pure numpy; must not import pipeinfer._core).

Layout:
    params.py      SamplingParams: every sampling knob, validated when built
    transforms.py  the chain's pure functions over one logits vector (bias, penalties, top-k, typical-p,
                   top-p, min-p, temperature, softmax / log-softmax)
    sampler.py     Sampler: the chain for one SamplingParams, its distribution and seeded draw
    chooser.py     TokenChooser: the one token chooser of a generation in every decoding mode (processed
                   logits, greedy argmax or exact rejection sampling of drafted candidates, logprobs,
                   the constraint's state, cutting drafts that break it)
    constraint.py  structured output through llguidance: JSON schema, JSON object, regex, grammar
"""
from pipeinfer.sampling.chooser import Constraint, TokenChooser, TokenLogprob, accept_candidates
from pipeinfer.sampling.params import MAX_STOP_STRINGS, MAX_TEMPERATURE, MAX_TOKEN_ID, MAX_TOP_LOGPROBS, SamplingParams
from pipeinfer.sampling.sampler import Sampler, make_sampler
from pipeinfer.sampling.transforms import (
    MAX_LOGIT,
    apply_logit_bias,
    apply_min_p,
    apply_penalties,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    apply_typical_p,
    log_softmax,
    softmax,
)

__all__ = [
    "MAX_TEMPERATURE", "MAX_LOGIT", "MAX_STOP_STRINGS", "MAX_TOKEN_ID", "MAX_TOP_LOGPROBS", "SamplingParams",
    "Sampler", "make_sampler", "TokenChooser", "TokenLogprob", "Constraint", "accept_candidates", "softmax",
    "log_softmax", "apply_logit_bias", "apply_penalties", "apply_top_k", "apply_typical_p", "apply_top_p",
    "apply_min_p", "apply_temperature",
]  # fmt: skip
