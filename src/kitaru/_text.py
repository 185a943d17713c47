"""Text that is not valid Unicode: lone surrogates.

Python represents bytes that do not decode (command-line arguments, file names,
``surrogateescape`` input) as lone surrogates (``"\\udcff"``). No database and no
UTF-8 stream can hold them, so lookups treat such text as matching nothing and
display code shows it escaped (``\\udcff``) instead of crashing.
"""

from __future__ import annotations


def storable_text(value: object) -> bool:
    """False for text no database can hold (lone surrogates), so it matches no stored row."""
    if not isinstance(value, str) or value.isascii():  # isascii() is O(1): a flag
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_text(value: str) -> str:
    """``value`` with lone surrogates replaced by their escape (``\\udcff``)."""
    if storable_text(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


__all__ = ["printable_text", "storable_text"]
