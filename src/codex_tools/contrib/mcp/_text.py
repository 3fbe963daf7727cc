"""Text any MCP peer can read: the wire is UTF-8 JSON, and a tool's text need not be."""

from __future__ import annotations

__all__ = ["clean_text", "safe_str"]


def clean_text(text: str) -> str:
    """``text`` with U+FFFD for each lone surrogate (the same object when it has none).

    A lone surrogate is how Python holds a byte that is not UTF-8 (``os.listdir`` on such
    a file name); UTF-8 cannot encode it. A surrogate pair becomes its character.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def safe_str(value: object) -> str:
    """``str(value)`` fit for the wire, even when ``__str__`` raises."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001  (any object may come back from a tool)
        text = f"<{type(value).__name__} object>"
    return clean_text(text)
