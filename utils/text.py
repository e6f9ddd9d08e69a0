"""Short, safe renderings of values for one-line error messages.

An error message must stay one short line whatever the value it names: ``repr`` of a hostile value can be
megabytes long (an expanded YAML alias), recurse thousands of levels deep, or fail outright (an int of more than
4,300 digits raises ValueError under Python >= 3.11). :func:`short_repr` never does any of these.
"""
from __future__ import annotations

import reprlib


class _ShortRepr(reprlib.Repr):
    """reprlib with every size bounded, large ints described by their size, and any failing repr replaced."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = limit
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 6

    def repr_int(self, x, level):
        if x.bit_length() > 128:
            return f"<an int of {x.bit_length()} bits>"
        return repr(x)

    def repr1(self, x, level):
        try:
            return super().repr1(x, level)
        except Exception:  # noqa: BLE001 - a value whose repr fails (or recurses) is still named by its type
            return f"<{type(x).__name__}>"


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, nested values to 3 levels and 6 items, on one line."""
    text = _ShortRepr(limit).repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit + 20 else text[:limit] + "..."
