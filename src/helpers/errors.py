"""Errors that mean "your input is wrong", told apart from bugs: the CLI prints their message on one line.

`UserError` is the base of every problem a user can fix (a setting, a corpus, a manifest); its message names the
file or setting, the value and the fix. Anything else that escapes is a bug, and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError"]


class UserError(Exception):
    """A problem with what the user gave (settings, data); the message says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A run setting that cannot be used: names the setting, the value given and what to give instead."""
