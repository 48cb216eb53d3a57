"""Errors a user can cause. The CLI turns every ``KmcError`` into one line on stderr and exit code 2."""
from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped as in a Python literal (``\\n``,
    ``\\t``, ``\\x1b``, ``\\u2028``): a message quoting what a user typed stays on one line and shows
    exactly what was typed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class KmcError(Exception):
    """Bad input: the message says what was wrong and what is allowed (on one line: keys, file names
    and values quoted in it have their non-printable characters escaped)."""

    exit_code = 2

    def __init__(self, message: str = "", *args):
        super().__init__(printable(str(message)), *args)


class ScenarioError(KmcError, ValueError):
    """A scenario key with a value that is not allowed. ``key`` is the dotted key as given."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r} is not allowed: expected {allowed}")
