"""render_chat: the real templates of SmolLM2-135M and Qwen2.5-Coder against hand-written expected
prompts, the ChatML fallback, HF-compatible helpers, the sandbox, and message validation."""
from __future__ import annotations

import datetime
import struct
from pathlib import Path

import pytest

from pipeinfer.chat import CHATML_TEMPLATE, ChatTemplateError, render_chat, validate_messages

# tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf (copied from the file; checked below).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# tokenizer.chat_template of qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (copied from the file; checked below).
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

SYS_USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}]
USER_ASSISTANT = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


# --- real templates -----------------------------------------------------------------------------------


def test_smollm2_system_and_user_with_generation_prompt():
    assert render_chat(SMOLLM2_TEMPLATE, SYS_USER) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_default_system_prompt_without_generation_prompt():
    assert render_chat(SMOLLM2_TEMPLATE, USER_ASSISTANT, add_generation_prompt=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )


def test_qwen_system_and_user_with_generation_prompt():
    assert render_chat(QWEN25_TEMPLATE, SYS_USER) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen_default_system_prompt_without_generation_prompt():
    assert render_chat(QWEN25_TEMPLATE, USER_ASSISTANT, add_generation_prompt=False) == (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )


def test_qwen_tools_use_tojson_without_html_escaping():
    tools = [{"type": "function", "function": {"name": "f", "description": "a<b & 'c'"}}]
    got = render_chat(QWEN25_TEMPLATE, [{"role": "user", "content": "Hi!"}], tools=tools)
    assert got == (
        f"<|im_start|>system\n{QWEN_SYSTEM}\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "f", "description": "a<b & \'c\'"}}\n</tools>\n\n'
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen_assistant_tool_call_with_no_content_and_tool_reply():
    messages = [
        {"role": "user", "content": "Add."},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"x": 1, "y": "é"}}}]},
        {"role": "tool", "content": "3"},
    ]
    assert render_chat(QWEN25_TEMPLATE, messages, add_generation_prompt=False) == (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nAdd.<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "add", "arguments": {"x": 1, "y": "é"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n"
    )


# --- fallback and environment -------------------------------------------------------------------------


@pytest.mark.parametrize("template", [None, ""])
def test_chatml_fallback(template):
    assert render_chat(template, SYS_USER) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(template, SYS_USER, add_generation_prompt=False).endswith("Hi!<|im_end|>\n")
    assert render_chat(template, SYS_USER) == render_chat(CHATML_TEMPLATE, SYS_USER)


def test_bos_eos_and_extra_variables_reach_the_template():
    t = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}[{{ date_string }}]"
    got = render_chat(t, USER_ASSISTANT, bos_token="<s>", eos_token="</s>", date_string="1 Jan")
    assert got == "<s>Hi!</s>Hello.</s>[1 Jan]"


def test_trim_and_lstrip_blocks_like_hf():
    t = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}"
    assert render_chat(t, USER_ASSISTANT) == "[Hi!]\n"


def test_loop_controls_and_generation_block():
    t = ("{% for m in messages %}{% if m.role == 'assistant' %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
         "|{% generation %}gen{% endgeneration %}")
    assert render_chat(t, USER_ASSISTANT) == "Hi!|gen"


def test_strftime_now_and_raise_exception():
    assert render_chat("{{ strftime_now('%Y') }}", USER_ASSISTANT) in {
        str(datetime.datetime.now().year), str(datetime.datetime.now().year - 1)}
    t = "{% if messages[0].role != 'system' %}{{ raise_exception('System message required') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="chat template raised an error: System message required"):
        render_chat(t, USER_ASSISTANT)


def test_syntax_error_names_the_line():
    with pytest.raises(ChatTemplateError, match="syntax error at line 2"):
        render_chat("ok\n{% for m in messages %}", USER_ASSISTANT)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% set xs = [] %}{{ xs.append(1) }}",
        "{{ messages.clear() }}",
        "{{ messages[0].content.__class__ }}{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_unsafe_templates(template):
    messages = [dict(m) for m in USER_ASSISTANT]
    with pytest.raises(ChatTemplateError, match="chat template"):
        render_chat(template, messages)
    assert messages == USER_ASSISTANT  # nothing was mutated


def test_runtime_type_errors_become_chat_template_errors():
    with pytest.raises(ChatTemplateError, match="rendering failed"):
        render_chat("{{ messages[0].content + 1 }}", USER_ASSISTANT)


# --- message validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages,match",
    [
        ("hello", "expected a list"),
        ({"role": "user", "content": "x"}, "expected a list"),
        ([], "empty"),
        (["hi"], r"messages\[0\]: expected a dict"),
        ([{"content": "x"}], r"messages\[0\]\['role'\]: expected a non-empty string, got None"),
        ([{"role": "", "content": "x"}], r"messages\[0\]\['role'\]"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": 5}],
         r"messages\[1\]\['content'\]: expected a string, got int"),
        ([{"role": "user"}], r"None is allowed only with tool_calls"),
        ([{"role": "user", "content": ["part"]}], r"got list"),
    ],
)
def test_bad_messages_raise_value_error(messages, match):
    with pytest.raises(ValueError, match=match):
        render_chat(None, messages)


def test_validate_messages_returns_list_and_allows_tool_call_without_content():
    msgs = validate_messages(({"role": "assistant", "tool_calls": [{"id": 1}]},))
    assert isinstance(msgs, list) and len(msgs) == 1


def test_template_must_be_a_string():
    with pytest.raises(ValueError, match="template must be a string"):
        render_chat(b"{{ 1 }}", USER_ASSISTANT)  # type: ignore[arg-type]


# --- the templates really are the ones in the GGUF files ----------------------------------------------


def read_gguf_string_key(path: Path, key: str) -> str:
    """Reads one string value from a GGUF header without touching tensor data (format: GGUF v2/v3)."""
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as f:
        magic, version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        assert magic == b"GGUF" and version in (2, 3)

        def read_str() -> bytes:
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n)

        def skip(vtype: int) -> None:
            if vtype in scalar:
                f.seek(scalar[vtype], 1)
            elif vtype == 8:
                (n,) = struct.unpack("<Q", f.read(8))
                f.seek(n, 1)
            elif vtype == 9:
                etype, count = struct.unpack("<IQ", f.read(12))
                if etype in scalar:
                    f.seek(scalar[etype] * count, 1)
                else:
                    for _ in range(count):
                        skip(etype)
            else:
                raise AssertionError(f"unknown GGUF value type {vtype}")

        for _ in range(n_kv):
            name = read_str().decode()
            (vtype,) = struct.unpack("<I", f.read(4))
            if name == key:
                assert vtype == 8
                return read_str().decode()
            skip(vtype)
    raise KeyError(key)


@pytest.mark.realmodel
@pytest.mark.parametrize("name,template", [("smollm2-135m", SMOLLM2_TEMPLATE), ("qwen2.5-coder-0.5b", QWEN25_TEMPLATE)])
def test_embedded_templates_match_the_gguf_files(real_model_path, name, template):
    assert read_gguf_string_key(real_model_path(name), "tokenizer.chat_template") == template


# ------------------------------------------------------------------ built-in formats for files without one
CONVERSATION = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi! "},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]


def test_builtin_gemma_format_is_llama_cpps():
    """llama.cpp's LLM_CHAT_TEMPLATE_GEMMA: system merged into the first user turn, assistant = model."""
    from pipeinfer.chat import BUILTIN_TEMPLATES

    assert render_chat(BUILTIN_TEMPLATES["gemma"], CONVERSATION) == (
        "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )


def test_builtin_llama3_phi3_mistral_formats_are_llama_cpps():
    from pipeinfer.chat import BUILTIN_TEMPLATES

    assert render_chat(BUILTIN_TEMPLATES["llama3"], CONVERSATION[1:3]) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render_chat(BUILTIN_TEMPLATES["phi3"], CONVERSATION[1:2]) == "<|user|>\nHi! <|end|>\n<|assistant|>\n"
    assert render_chat(BUILTIN_TEMPLATES["mistral"], CONVERSATION) == (
        " [INST]  Be brief. \n\nHi!  [/INST] Hello.</s> [INST] Bye [/INST]"
    )


@pytest.mark.parametrize("arch,tokens,want", [
    ("gemma3", ["<pad>", "<eos>"], "gemma"),
    ("llama", ["<s>", "<start_of_turn>", "<end_of_turn>"], "gemma"),
    ("llama", ["<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"], "llama3"),
    ("qwen2", ["<|im_start|>", "<|im_end|>"], "chatml"),
    ("phi3", ["<s>", "</s>"], "phi3"),
    ("llama", ["<s>", "<|user|>", "<|end|>", "<|assistant|>"], "phi3"),
    ("llama", ["<s>", "[INST]", "[/INST]"], "mistral"),
    ("llama", ["<s>", "</s>"], "chatml"),
    (None, None, "chatml"),
])
def test_builtin_template_chosen_by_architecture_and_vocabulary(arch, tokens, want):
    from pipeinfer.chat import builtin_template

    assert builtin_template(arch, tokens) == want


@pytest.mark.realmodel
def test_gemma3_file_without_template_gets_the_gemma_format(real_model_path):
    """gemma-3-270m's GGUF has no tokenizer.chat_template: the gemma format is chosen, not ChatML."""
    from pipeinfer import _core
    from pipeinfer.chat import BUILTIN_TEMPLATES, builtin_template

    meta = _core.GGUFFile(str(real_model_path("gemma3-270m"))).metadata()
    assert "tokenizer.chat_template" not in meta
    name = builtin_template(meta["general.architecture"], meta["tokenizer.ggml.tokens"])
    assert name == "gemma"
    assert render_chat(BUILTIN_TEMPLATES[name], [{"role": "user", "content": "Hi"}]) == (
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
