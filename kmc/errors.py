"""Errors a user can cause. The CLI turns every ``KmcError`` into one line on stderr and exit code 2."""
from __future__ import annotations


class KmcError(Exception):
    """Bad input: the message says what was wrong and what is allowed."""

    exit_code = 2


class ScenarioError(KmcError, ValueError):
    """A scenario key with a value that is not allowed."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r} is not allowed: expected {allowed}")
