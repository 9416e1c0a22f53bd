"""StopMatcher: holds back possible stop-string prefixes, never emits the stop string, and agrees with
a whole-text reference on random splits."""
from __future__ import annotations

import random

import pytest

from pipeinfer.stopping import StopMatcher


def run(stops, pieces):
    m = StopMatcher(stops)
    out = []
    for piece in pieces:
        emit, stopped = m.feed(piece)
        out.append(emit)
        if stopped:
            return "".join(out), True, m
    out.append(m.flush())
    return "".join(out), False, m


def reference(stops, text):
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
        return text, False
    return text[: min(hits)[0]], True


def test_no_stop_strings_pass_through():
    m = StopMatcher([])
    assert m.feed("abc") == ("abc", False)
    assert m.flush() == ""


def test_stop_split_across_pieces_is_not_emitted():
    m = StopMatcher(["</s>"])
    assert m.feed("hello <") == ("hello ", False)
    assert m.held == "<"
    assert m.feed("/") == ("", False)
    assert m.feed("s> tail") == ("", True)
    assert m.stopped and m.matched == "</s>"
    assert m.feed("more") == ("", True)
    assert m.flush() == ""


def test_false_prefix_is_released():
    m = StopMatcher(["</s>"])
    assert m.feed("a </") == ("a ", False)
    assert m.feed("b") == ("</b", False)
    assert m.flush() == ""


def test_flush_returns_held_prefix_at_end_of_stream():
    m = StopMatcher(["STOP"])
    assert m.feed("xyzST") == ("xyz", False)
    assert m.flush() == "ST"
    assert m.flush() == ""


def test_earliest_stop_wins_and_text_after_is_dropped():
    m = StopMatcher(["bd", "abc"])
    assert m.feed("xa") == ("x", False)
    assert m.feed("b") == ("", False)
    assert m.feed("dc") == ("a", True)
    assert m.matched == "bd"


def test_stop_at_start_and_single_string_argument():
    m = StopMatcher("\n\n")
    assert m.feed("\n\nrest") == ("", True)


def test_overlapping_prefixes():
    assert run(["ab"], ["a", "a", "b"])[:2] == ("a", True)
    assert run(["aab"], ["a", "a", "a", "b"])[:2] == ("a", True)
    assert run(["abab"], ["ab", "a", "c"])[:2] == ("abac", False)


def test_bad_stop_strings_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        StopMatcher([""])
    with pytest.raises(ValueError, match="non-empty"):
        StopMatcher(["ok", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str"):
        StopMatcher(["x"]).feed(b"bytes")  # type: ignore[arg-type]


def test_random_splits_agree_with_whole_text_reference():
    rnd = random.Random(11)
    alphabet = "ab<>/\n"
    for _ in range(400):
        stops = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 4))) for _ in range(rnd.randint(1, 3))]
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        cuts = sorted(rnd.sample(range(len(text) + 1), k=min(len(text) + 1, rnd.randint(0, 8))))
        pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
        got, stopped, _ = run(stops, pieces)
        assert (got, stopped) == reference(stops, text), (stops, pieces)


def test_held_text_is_bounded_by_longest_stop():
    m = StopMatcher(["abcdef"])
    for _ in range(100):
        m.feed("abcde"[: 5])
        assert len(m.held) <= 5
