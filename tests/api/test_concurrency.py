"""One Pipeline used from several streams or threads: correct output for each, or a clear
PipelineBusyError; never mixed-up text."""
from __future__ import annotations

import threading

import pytest

import pipeinfer
from pipeinfer import PipelineBusyError

PROMPTS = [[5, 17, 99, 3, 250], [7, 7, 31, 200], [123, 4, 56, 78, 9, 10], [250, 1, 2]]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=3)
    return path


@pytest.fixture(scope="module", params=[1, 2], ids=["1stage", "2stages"])
def pipe(tiny, request):
    p = pipeinfer.Pipeline(str(tiny), n_ctx=128, n_threads=1, stages=request.param)
    yield p
    p.close()


@pytest.fixture(scope="module")
def solo(pipe):
    """Each prompt's greedy tokens when it runs alone."""
    out = {}
    for pr in PROMPTS:
        pipe.reset()
        out[tuple(pr)] = pipe.generate(pr, max_tokens=10, temperature=0).tokens
    return out


def test_interleaved_stream_raises_and_leaves_the_first_intact(pipe, solo):
    a = pipe.stream(PROMPTS[0], max_tokens=10, temperature=0)
    b = pipe.stream(PROMPTS[1], max_tokens=10, temperature=0)
    next(a)
    with pytest.raises(PipelineBusyError, match="iterate a Stream to its end or call its close"):
        next(b)
    for _ in a:
        pass
    assert a.tokens == solo[tuple(PROMPTS[0])]
    # b never started: it can run now that a is done, and gives its own output
    for _ in b:
        pass
    assert b.tokens == solo[tuple(PROMPTS[1])]


def test_one_shot_calls_refused_during_own_stream(pipe, solo):
    a = pipe.stream(PROMPTS[2], max_tokens=10, temperature=0)
    next(a)
    with pytest.raises(PipelineBusyError):
        pipe.eval_logits([1, 2, 3])
    with pytest.raises(PipelineBusyError):
        pipe.reset()
    with pytest.raises(PipelineBusyError):
        pipe.generate(PROMPTS[3], max_tokens=4, temperature=0)
    a.close()  # frees the pipeline mid-generation
    assert pipe.generate(PROMPTS[2], max_tokens=10, temperature=0).tokens == solo[tuple(PROMPTS[2])]


def test_stream_closed_before_its_first_token_never_takes_the_pipeline(pipe, solo):
    a = pipe.stream(PROMPTS[0], max_tokens=10, temperature=0)
    a.close()
    assert list(a) == []
    assert pipe.generate(PROMPTS[3], max_tokens=10, temperature=0).tokens == solo[tuple(PROMPTS[3])]


def test_threads_hammering_one_pipeline_each_get_their_own_output(pipe, solo):
    results: dict = {}
    errors: list = []

    def worker(i: int) -> None:
        try:
            for k in range(3):
                pr = PROMPTS[(i + k) % len(PROMPTS)]
                if k == 1:  # a streamed one, consumed piece by piece
                    s = pipe.stream(pr, max_tokens=10, temperature=0)
                    for _ in s:
                        pass
                else:
                    s = pipe.generate(pr, max_tokens=10, temperature=0)
                results[(i, k)] = (tuple(pr), s.tokens)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == 18
    for pr, toks in results.values():
        assert toks == solo[pr]


def test_close_closes_this_threads_unfinished_stream(tiny):
    p = pipeinfer.Pipeline(str(tiny), n_ctx=128, n_threads=1, stages=2)
    s = p.stream(PROMPTS[0], max_tokens=10, temperature=0)
    next(s)
    p.close()  # no hang, no error: the stream is closed first
    assert list(s) == []
    with pytest.raises(RuntimeError, match="closed"):
        p.stream(PROMPTS[0])
