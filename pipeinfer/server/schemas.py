"""Request bodies of the OpenAI endpoints, validated by pydantic (a bad field becomes a 400 naming it).

Field names and ranges follow OpenAI's API: ``n`` choices, ``logprobs`` (completions: alternatives per
token; chat: ``logprobs`` / ``top_logprobs``), ``echo`` and ``response_format`` (json_object /
json_schema structured output); ``top_k``, ``min_p``, ``repeat_penalty`` and ``grammar`` (GBNF) are
the llama.cpp extensions that ``pipeinfer.Pipeline.stream`` also takes. Unknown fields are ignored, as
OpenAI-compatible servers do. Features this server does not offer (``suffix``, ``best_of`` > 1,
``tools``) are refused with a 400 naming the field rather than silently ignored.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationInfo,
                      field_validator)

from pipeinfer.completions import MAX_CHOICES, choice_seed
from pipeinfer.sampling import MAX_TOP_LOGPROBS

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
    n: StrictInt = Field(1, ge=1, le=MAX_CHOICES, description="choices, generated one after the other")
    user: Optional[StrictStr] = None
    response_format: Optional[Dict[StrictStr, Any]] = None
    grammar: Optional[StrictStr] = Field(None, min_length=1, description="a GBNF grammar (llama.cpp's server)")

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

    @property
    def structured_field(self) -> Optional[str]:
        """The field that asks for structured output, if any (names the errors of its grammar)."""
        return "grammar" if self.grammar is not None else "response_format" if self.response_format else None

    def stream_kwargs(self, choice: int = 0) -> Dict[str, Any]:
        """Keyword arguments of ``Pipeline.stream`` for choice ``choice`` (a seeded request's choice i
        uses seed + i, as ``create_completion`` does)."""
        out: Dict[str, Any] = dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                   min_p=self.min_p, repeat_penalty=self.repeat_penalty,
                                   presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                                   seed=self.seed if self.n == 1 or self.seed is None else choice_seed(self.seed, choice),
                                   stop=self.stop, response_format=self.response_format, grammar=self.grammar)
        if self.logit_bias:
            # OpenAI's -100 bans a token
            out["logit_bias"] = {int(k): (float("-inf") if b <= -100 else float(b)) for k, b in self.logit_bias.items()}
        if self._logprobs() is not None:
            out["logprobs"] = self._logprobs()
        return out

    def _logprobs(self) -> Optional[int]:
        return None


class CompletionRequest(_Sampling):
    prompt: Union[StrictStr, List[StrictInt], List[StrictStr], List[List[StrictInt]]]
    max_tokens: Optional[StrictInt] = Field(16, ge=1)  # OpenAI's default for /v1/completions
    echo: StrictBool = False
    suffix: None = None
    best_of: StrictInt = Field(1, ge=1, le=1)
    logprobs: Optional[StrictInt] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("logprobs")
    @classmethod
    def _no_echo(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and info.data.get("echo"):
            raise ValueError("echo with logprobs is not supported (prompt tokens have no logprobs here)")
        return v

    def _logprobs(self) -> Optional[int]:
        return self.logprobs

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
    logprobs: StrictBool = False
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: None = None
    tool_choice: None = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    def _logprobs(self) -> Optional[int]:
        return (self.top_logprobs or 0) if self.logprobs else None

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

    def limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
