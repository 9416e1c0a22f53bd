"""Chat templates come from model files: a hostile one must end with a clear ChatTemplateError, in
bounded time and memory, never hang or exhaust the machine (pipeinfer/template_limits.py)."""
from __future__ import annotations

import threading

import pytest

from pipeinfer.chat import ChatTemplateError, render_chat
from pipeinfer.template_limits import BoundedSandbox, TemplateLimitError, TemplateLimits, render_bounded

MSGS = [{"role": "user", "content": "hi"}]

# Each would allocate gigabytes in one step or produce megabytes of output; every one is refused
# before the allocation, with the default limits.
ONE_STEP = [
    ("str-times-4e9", "{{ 'x' * 4000000000 }}", r"str \* 4000000000 would be 4000000000 long"),
    ("int-times-str", "{{ 4000000000 * 'x' }}", r"would be 4000000000 long"),
    ("list-of-refs", "{% set s = 'x' * 4000000 %}{{ [s] * 100000 }}", r"list \* 100000 would be"),
    ("tilde-doubling",
     "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     r"'~' concatenation would be"),
    ("plus-doubling",
     "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
     r"concatenation would be"),
    ("int-power", "{{ 2 ** 10000000000 }}", r"integer power \(bits\)"),
    ("int-squaring",
     "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
     r"integer product \(bits\)"),
    ("printf-width", "{{ '%999999999s' % 'x' }}", r"'%' formatting: width 999999999"),
    ("printf-star", "{{ '%*s' % (999999999, 'x') }}", r"taken from the arguments"),
    ("format-filter", "{{ '%999999999d'|format(1) }}", r"'%' formatting: width"),
    ("str-format-width", "{{ '{:999999999}'.format('x') }}", r"str.format: width 999999999"),
    ("center-method", "{{ 'x'.center(999999999) }}", r"str.center\(\) result"),
    ("ljust-method", "{{ 'x'.ljust(999999999) }}", r"str.ljust\(\) result"),
    ("expandtabs", "{{ ('\t' * 1000).expandtabs(99999999) }}", r"str.expandtabs\(\) result"),
    ("replace-method", "{{ ('x' * 1000000).replace('x', 'xxxxxxxxxx') }}", r"replace\(\) result"),
    ("center-filter", "{{ 'x'|center(999999999) }}", r"center filter width"),
    ("indent-filter", "{{ 'a\nb'|indent(999999999) }}", r"indent filter result"),
    ("replace-filter", "{{ ('x' * 1000000)|replace('x', 'xxxxxxxxxx') }}", r"replace\(\) result"),
    ("join-filter", "{% set s = 'x' * 4000000 %}{{ [s, s]|join }}", r"join filter result"),
    ("join-method", "{% set s = 'x' * 4000000 %}{{ ''.join([s, s]) }}", r"str.join\(\) result"),
    ("tojson-indent", "{{ messages|tojson(indent=1000000000) }}", r"tojson: indent 1000000000"),
    ("output", "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
     r"the rendered output would be \d+ long, over the limit of 4194304"),
]


@pytest.mark.parametrize("template, match", [c[1:] for c in ONE_STEP], ids=[c[0] for c in ONE_STEP])
def test_one_step_blowups_are_refused_before_they_run(template, match):
    with pytest.raises(ChatTemplateError, match=match):
        render_chat(template, MSGS)


def _small(**kw) -> TemplateLimits:
    return TemplateLimits(**{"max_cpu_s": 0.3, "max_wall_s": 60.0, **kw})


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",  # silent loops
        "{{ lipsum(n=100000000) }}",
        "{% set x %}{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"
        "{% endset %}{{ x|length }}",  # output captured in a block: not streamed
    ],
    ids=["silent-nested-loops", "lipsum", "captured-block"],
)
def test_long_renders_are_stopped_by_the_watchdog(template):
    env = BoundedSandbox(limits=_small())
    with pytest.raises(TemplateLimitError, match=r"rendering was stopped after .* of CPU time \(limit 0.3 s\)"):
        render_bounded(env.from_string(template), env.limits, {})


def test_memory_growth_is_stopped_by_the_watchdog():
    env = BoundedSandbox(limits=_small(max_cpu_s=30.0, max_memory_growth=64 << 20))
    template = ("{% set x %}{% for i in range(100000) %}{% for j in range(100000) %}{{ 'abcdefgh' }}{% endfor %}"
                "{% endfor %}{% endset %}{{ x|length }}")
    with pytest.raises(TemplateLimitError, match=r"using \d+ MiB more memory \(limit 64 MiB\)"):
        render_bounded(env.from_string(template), env.limits, {})


def test_a_stopped_render_leaves_the_thread_usable():
    """The exception the watchdog injects is raised inside the render, or withdrawn: the caller's next
    statements and the next render run normally."""
    env = BoundedSandbox(limits=_small(max_cpu_s=0.05))
    slow = env.from_string("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    fast = env.from_string("{{ a }}-{{ b }}")
    for _ in range(3):
        with pytest.raises(TemplateLimitError):
            render_bounded(slow, env.limits, {})
        total = sum(range(200000))  # plain Python after the stop: nothing pending may hit it
        assert total == 19999900000
        assert render_bounded(fast, env.limits, {"a": 1, "b": 2}) == "1-2"
    assert [t.name for t in threading.enumerate() if "template-watchdog" in t.name] == []


def test_ordinary_templates_are_unchanged():
    long_chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 200} for i in range(200)]
    out = render_chat(None, long_chat)
    assert out.count("<|im_start|>") == 201 and len(out) > 200 * 1000
    assert render_chat("{{ '%5s|%-3d' % ('ab', 7) }}{{ 'x' * 3 }}{{ [1] * 2 }}{{ 2 ** 10 }}", MSGS) == "   ab|7  xxx[1, 1]1024"
    assert render_chat("{{ 'a'|center(5) }}{{ '{:>4}'.format('b') }}{{ 'c' ~ 'd' }}", MSGS) == "  a     bcd"
