"""Request bodies of the OpenAI endpoints, validated by pydantic (a bad field becomes a 400 naming it).

Field names and ranges follow OpenAI's API; ``top_k``, ``min_p`` and ``repeat_penalty`` are the
llama.cpp extensions that ``pipeinfer.SamplingParams`` also takes. Unknown fields are ignored, as
OpenAI-compatible servers do. Features this server does not offer yet (``n > 1``, ``logprobs``,
``echo``, ``suffix``, ``tools``, JSON mode) are refused with a 400 naming the field rather than
silently ignored.
"""
from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

MAX_STOP = 16  # stop strings per request
ROLES = ("system", "developer", "user", "assistant", "tool")
Number = Union[StrictInt, StrictFloat]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class _Sampling(BaseModel):
    """Fields shared by both endpoints."""

    model_config = ConfigDict(extra="ignore")

    model: Optional[StrictStr] = None
    max_tokens: Optional[StrictInt] = Field(None, ge=1)
    temperature: Number = Field(1.0, ge=0.0, le=2.0)
    top_p: Number = Field(1.0, gt=0.0, le=1.0)
    top_k: StrictInt = Field(0, ge=0)
    min_p: Number = Field(0.0, ge=0.0, le=1.0)
    repeat_penalty: Number = Field(1.0, gt=0.0, le=1e6)
    presence_penalty: Number = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: Number = Field(0.0, ge=-2.0, le=2.0)
    seed: Optional[StrictInt] = Field(None, ge=0, lt=2**64)
    stop: Union[StrictStr, List[StrictStr], None] = None
    logit_bias: Optional[Dict[str, Number]] = None
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    n: StrictInt = Field(1, ge=1, le=1, description="one choice per request")
    user: Optional[StrictStr] = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else (v or [])
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(items)}")
        if any(not s for s in items):
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: Optional[Dict[str, float]]) -> Optional[Dict[str, float]]:
        for k, b in (v or {}).items():
            if not k.isdigit():
                raise ValueError(f"keys must be token ids (decimal strings), got {k!r}")
            if not -100.0 <= b <= 100.0:
                raise ValueError(f"bias of token {k} must be in [-100, 100], got {b}")
        return v

    def sampling(self) -> Dict[str, Any]:
        """Keyword arguments of ``Pipeline.stream`` (pipeinfer.SamplingParams fields)."""
        out: Dict[str, Any] = dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                   min_p=self.min_p, repeat_penalty=self.repeat_penalty,
                                   presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                                   seed=self.seed, stop=self.stop)
        if self.logit_bias:
            # OpenAI's -100 bans a token
            out["logit_bias"] = {int(k): (float("-inf") if b <= -100 else float(b)) for k, b in self.logit_bias.items()}
        return out


class CompletionRequest(_Sampling):
    prompt: Union[StrictStr, List[StrictInt], List[StrictStr], List[List[StrictInt]]]
    max_tokens: Optional[StrictInt] = Field(16, ge=1)  # OpenAI's default for /v1/completions
    echo: Literal[False] = False
    suffix: None = None
    best_of: StrictInt = Field(1, ge=1, le=1)
    logprobs: None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("the prompt is empty")
            if isinstance(v[0], (str, list)):
                if len(v) != 1:
                    raise ValueError(f"one prompt per request (n = 1), got a batch of {len(v)}")
                v = v[0]
        if not v:
            raise ValueError("the prompt is empty")
        return v


class ChatCompletionRequest(_Sampling):
    messages: List[Dict[StrictStr, Any]] = Field(..., min_length=1)
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=1)
    logprobs: Literal[False] = False
    top_logprobs: None = None
    tools: None = None
    tool_choice: None = None
    response_format: Optional[Dict[StrictStr, Any]] = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Roles are OpenAI's; content parts of type "text" are joined into one string."""
        out = []
        for i, m in enumerate(v):
            role = m.get("role")
            if role not in ROLES:
                raise ValueError(f"message {i}: role must be one of {', '.join(ROLES)}; got {role!r}")
            content = m.get("content")
            if isinstance(content, list):
                texts = []
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise ValueError(f"message {i}: only text content parts are supported, got {part!r:.80}")
                    texts.append(part["text"])
                m = {**m, "content": "".join(texts)}
            out.append(m)
        return out

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, v: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if v is not None and v.get("type", "text") != "text":
            raise ValueError(f"only type 'text' is supported, got {v.get('type')!r}")
        return v

    def limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
