"""Text that keeps its format: names and messages can hold anything (private).

Layer names come from module attribute names and state_dict keys, messages from exceptions:
either can carry control characters (ANSI escapes that repaint a terminal, NUL bytes that XML
forbids) or a ``|`` that splits a Markdown table cell. Renderers pass such text through here.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["md_cell", "md_code", "printable"]


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


_MD_SPECIAL = "\\`[]<>!|&"  # what could start a code span, a link, an image or raw HTML


def md_cell(text: str) -> str:
    """Markdown text (a table cell, a line, a heading): printable, on one line, every
    character that could start markup, a link, an image or raw HTML backslash-escaped (a name
    can never render as a fake badge or a tracking image).

    Example:
        >>> md_cell("a|b <img src=x>")
        'a\\\\|b \\\\<img src=x\\\\>'
    """
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in printable(text, keep=""))


def md_code(text: str) -> str:
    """A Markdown code span of ``text`` (a layer name), fenced with more backticks than any run
    inside it, so that no backtick can close it early; ``|`` escaped for table cells.

    Example:
        >>> md_code("a`b")
        '`` a`b ``'
    """
    text = printable(text, keep="").replace("|", "\\|")
    runs = [len(r) for r in re.findall("`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"
