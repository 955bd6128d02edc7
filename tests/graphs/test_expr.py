"""The `when:` expression language: useful, and never `eval`."""

from __future__ import annotations

import pytest

from graphwright.graphs import Expression, ExpressionError

STATE = {"score": 0.7, "tags": ["a", "b"], "meta": {"k": 3, "name": "Ada"}, "n": 4, "s": "Hello"}


@pytest.mark.parametrize(("source", "expected"), [
    ("score > 0.5", True),
    ("score > 0.5 and n < 3", False),
    ("not (n == 4) or 'a' in tags", True),
    ("'z' not in tags", True),
    ("meta.k == 3 and meta['name'] == 'Ada'", True),
    ("meta.missing is None", True),
    ("len(tags) + n * 2 - 1", 9),
    ("tags[-1]", "b"),
    ("s[1:3]", "el"),
    ("lower(s) == 'hello' and startswith(s, 'He')", True),
    ("contains(tags, 'b')", True),
    ("max([n, 9]) // 2 % 3", 1),
    ("'big' if n > 3 else 'small'", "big"),
    ("0 < score < 1", True),
    ("1 < n < 3", False),
    ("true and not false and null is None", True),
    ("unset", None),
    ("n or 5", 4),
    ("0 and missing", 0),
])
def test_evaluates(source: str, expected: object) -> None:
    assert Expression(source).evaluate(STATE) == expected


def test_names_are_the_channels_it_reads() -> None:
    assert Expression("len(tags) > n and meta.k == true").names == {"tags", "n", "meta"}


@pytest.mark.parametrize("source", [
    "__import__('os').system('true')",   # call to a non-whitelisted function
    "open('/etc/passwd')",
    "s.__class__",                         # private attribute
    "s.upper()",                           # method call
    "[x for x in tags]",                   # comprehension
    "lambda: 1",
    "n ** 2",                              # power is not allowed
    "n << 2",
    "{'a': 1}",
    "len(tags, key=1)",
    "(n := 3)",
])
def test_rejects_unsafe_or_unsupported(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source)


def test_syntax_error_message() -> None:
    with pytest.raises(ExpressionError, match=r"'score >' does not parse"):
        Expression("score >")


def test_attribute_on_a_non_mapping_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="mappings only"):
        Expression("s.upper").evaluate(STATE)
