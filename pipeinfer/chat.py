"""Chat prompt rendering from the Jinja template a GGUF file carries (`tokenizer.chat_template`).

This module owns turning a list of OpenAI-style messages into one prompt string, the way Hugging Face
transformers' `apply_chat_template` does: a sandboxed Jinja environment with trim_blocks and
lstrip_blocks, the loopcontrols extension, a no-op `{% generation %}` block, the `raise_exception` and
`strftime_now` globals and a JSON `tojson` filter that does not HTML-escape. When a model has no
template, `builtin_template` picks the built-in chat format llama.cpp has for the model's family (by
architecture and the special tokens of its vocabulary: gemma, llama3, phi3, mistral), and ChatML
otherwise. It does not tokenize, does not read GGUF files and never evaluates a
template outside the sandbox (templates come from model files and are untrusted): the sandbox and the
bounds on rendering time and sizes are those of template_limits.py.
"""
from __future__ import annotations

import datetime
import functools
import json
from typing import Any, List, Mapping, Optional, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

from pipeinfer.template_limits import BoundedSandbox, TemplateLimitError, render_bounded

__all__ = ["BUILTIN_TEMPLATES", "CHATML_TEMPLATE", "ChatTemplateError", "builtin_template", "render_chat",
           "validate_messages"]

# ChatML, the fallback for models whose GGUF has no tokenizer.chat_template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# llama.cpp's built-in chat formats (src/llama-chat.cpp, llm_chat_apply_template) as Jinja, for files
# without a template, with llama.cpp's whitespace (gemma and llama3 trim contents); gemma merges system
# messages into the next user turn and names the assistant "model"; BOS comes from the tokenizer.
BUILTIN_TEMPLATES = {
    "chatml": CHATML_TEMPLATE,
    "gemma": (
        "{%- set ns = namespace(system='') -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{%- set ns.system = ns.system + (message['content'] | trim) -%}"
        "{%- else -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{- '<start_of_turn>' + role + '\n' -}}"
        "{%- if ns.system and role != 'model' -%}{{- ns.system + '\n\n' -}}{%- set ns.system = '' -%}{%- endif -%}"
        "{{- (message['content'] | trim) + '<end_of_turn>\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
    ),
    "llama3": (
        "{%- for message in messages -%}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim)"
        " + '<|eot_id|>' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"
    ),
    "phi3": (
        "{%- for message in messages -%}"
        "{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
    ),
    # "mistral-v1": a turn opens with " [INST] " (system text, then the user's), the user's text ends
    # with " [/INST]", the answer follows after a space and ends with </s>
    "mistral": (
        "{%- set ns = namespace(open=false) -%}"
        "{%- for message in messages -%}"
        "{%- if not ns.open -%}{{- ' [INST] ' -}}{%- set ns.open = true -%}{%- endif -%}"
        "{%- if message['role'] == 'system' -%}{{- message['content'] + '\n\n' -}}"
        "{%- elif message['role'] == 'user' -%}{{- message['content'] + ' [/INST]' -}}"
        "{%- else -%}{{- ' ' + message['content'] + '</s>' -}}{%- set ns.open = false -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    ),
}


def builtin_template(arch: Optional[str], tokens: Optional[Sequence[str]]) -> str:
    """The name of the built-in chat format for a model whose file has no template.

    Args:
        arch: general.architecture.
        tokens: the vocabulary (tokenizer.ggml.tokens), searched for each family's special tokens.

    Returns:
        A key of BUILTIN_TEMPLATES: "gemma" for gemma* architectures or a vocabulary with
        <start_of_turn>, "llama3" with <|start_header_id|> and <|eot_id|>, "chatml" with <|im_start|>,
        "phi3" for phi3 or a vocabulary with <|user|> and <|end|>, "mistral" with [INST], else "chatml".
    """
    vocab = frozenset(tokens or ())
    arch = arch or ""
    if arch.startswith("gemma") or "<start_of_turn>" in vocab:
        return "gemma"
    if {"<|start_header_id|>", "<|eot_id|>"} <= vocab:
        return "llama3"
    if "<|im_start|>" in vocab:
        return "chatml"
    if arch == "phi3" or {"<|user|>", "<|end|>"} <= vocab:
        return "phi3"
    if "[INST]" in vocab:
        return "mistral"
    return "chatml"


class ChatTemplateError(ValueError):
    """A chat template failed to compile or render, or called raise_exception()."""


def validate_messages(messages: Any) -> List[Mapping[str, Any]]:
    """Checks an OpenAI-style message list and returns it as a list.

    Every message is a mapping with a non-empty string `role` and a string `content`; `content` may be
    None (or absent) only for a message that carries `tool_calls`. Other keys pass through untouched.

    Raises:
        ValueError: naming the index and field that is wrong and what was found.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages: expected a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    out = list(messages)
    if not out:
        raise ValueError("messages: the list is empty; at least one message is required")
    for i, m in enumerate(out):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}]: expected a dict with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}]['role']: expected a non-empty string, got {role!r}")
        content = m.get("content")
        if content is None and m.get("tool_calls"):
            continue
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]['content']: expected a string, got {type(content).__name__}"
                             + (" (None is allowed only with tool_calls)" if content is None else ""))
    return out


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (used by HF training templates) renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _raise_exception(message: Any) -> None:
    raise ChatTemplateError(f"chat template raised an error: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # Like HF transformers: plain json.dumps (Jinja's builtin tojson escapes <, >, & and ').
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=1)
def _environment() -> BoundedSandbox:
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.bound_filters()
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template: syntax error at line {e.lineno}: {e.message}") from e


def render_chat(
    template: Optional[str],
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **kw: Any,
) -> str:
    """Renders messages into a prompt string with a model's chat template.

    Args:
        template: the Jinja source (GGUF key `tokenizer.chat_template`); None or "" selects ChatML.
        messages: OpenAI-style [{"role": ..., "content": ...}, ...]; see `validate_messages`.
        add_generation_prompt: append the header that opens the assistant's turn.
        bos_token, eos_token: exposed to the template as in HF transformers (many templates print
            `bos_token` themselves; the tokenizer must then not add another BOS).
        **kw: further template variables (e.g. tools=[...], date_string=...).

    Returns:
        The rendered prompt.

    Raises:
        ValueError: bad messages (see validate_messages).
        ChatTemplateError (a ValueError): the template does not compile, calls raise_exception(),
            attempts an operation the sandbox forbids, goes over a bound of template_limits.TemplateLimits
            (time, output or value size), or fails while rendering.
    """
    msgs = validate_messages(messages)
    if template is not None and not isinstance(template, str):
        raise ValueError(f"render_chat: template must be a string or None, got {type(template).__name__}")
    compiled = _compile(template if template else CHATML_TEMPLATE)
    variables = dict(messages=msgs, add_generation_prompt=bool(add_generation_prompt), bos_token=bos_token,
                     eos_token=eos_token, **kw)
    try:
        return render_bounded(compiled, _environment().limits, variables)
    except ChatTemplateError:
        raise
    except TemplateLimitError as e:
        raise ChatTemplateError(f"chat template: {e}") from e
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"chat template: operation forbidden by the sandbox: {e}") from e
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template: rendering failed: {e}") from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise ChatTemplateError(f"chat template: rendering failed: {type(e).__name__}: {e}") from e
