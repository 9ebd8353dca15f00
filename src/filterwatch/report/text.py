"""Text that keeps its format: names and messages can hold anything (private).

Layer names come from module attribute names and state_dict keys, messages from exceptions:
either can carry control characters (ANSI escapes that repaint a terminal, NUL bytes that XML
forbids) or a ``|`` that splits a Markdown table cell. Renderers pass such text through here.
"""

from __future__ import annotations

import unicodedata

__all__: list[str] = []


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "\n") -> str:
    """``text`` with every control or format character (but those in ``keep``) written as a
    visible escape: ``"\\x1b[31m"`` stays readable and does nothing to a terminal.

    Example:
        >>> printable("conv\\x1b[2Jname")
        'conv\\\\x1b[2Jname'
    """
    if text.isprintable() and "\n" not in text:
        return text
    return "".join(c if c in keep or unicodedata.category(c)[0] != "C" else _escape(c) for c in text)


def md_cell(text: str) -> str:
    """A Markdown table cell: printable, on one line, ``|`` escaped.

    Example:
        >>> md_cell("a|b")
        'a\\\\|b'
    """
    return printable(text, keep="").replace("|", "\\|")
