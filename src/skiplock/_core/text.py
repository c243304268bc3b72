"""Text from the database made safe to show on a terminal or to write to a log."""

from __future__ import annotations

import logging
import unicodedata

__all__ = ["ESCAPE_ARGS", "EscapeArgs", "oneline", "printable"]

# Characters that must never reach a terminal raw, each shown as a visible escape instead:
# - C0 and C1 control characters (ESC and CSI start escape sequences, OSC 8 writes hyperlinks,
#   CR rewrites the line) and DEL, as \xNN;
# - every format character (Unicode category Cf): the bidi embeddings, overrides and isolates
#   (U+202A-U+202E, U+2066-U+2069) and marks (U+200E/U+200F, U+061C) reorder what follows, so
#   "exe.txt" can be made to read "txt.exe"; zero-width spaces and joiners (U+200B-U+200D,
#   U+2060, U+FEFF) and tag characters (U+E0000 block) hide text inside a value that looks
#   clean; the rest of Cf is invisible too;
# - the line and paragraph separators U+2028/U+2029 (some terminals and viewers break lines on
#   them), lone surrogates (unprintable: they would make the write fail) and the Hangul fillers
#   that render as blank letters.
# Everything else (accents, CJK, emoji) is left alone. Backslashes are left alone too, so
# escaping twice changes nothing.
_ALWAYS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x115F, 0x1160, 0x3164, 0xFFA0]


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _is_dangerous(code: int) -> bool:
    return unicodedata.category(chr(code)) in ("Cc", "Cf", "Cs", "Zl", "Zp") or code in _ALWAYS


class _Table(dict[int, str | int]):
    """A ``str.translate`` table that decides each character the first time it is seen."""

    def __init__(self, keep_newlines: bool) -> None:
        super().__init__({c: _escape(c) for c in _ALWAYS})
        if keep_newlines:
            self[ord("\n")] = ord("\n")

    def __missing__(self, code: int) -> str | int:
        value: str | int = _escape(code) if _is_dangerous(code) else code
        self[code] = value
        return value


_ONE_LINE = _Table(keep_newlines=False)
_MULTI_LINE = _Table(keep_newlines=True)


def printable(value: object, *, newlines: bool = True) -> str:
    """``str(value)`` with every character that could drive the terminal or hide text escaped.

    Control characters (escape sequences, carriage returns), bidi controls, zero-width and
    other invisible format characters come out as visible escapes (``\\x1b``, ``\\u202e``), so
    job data can never move the cursor, recolour, clear the screen, reorder a line or hide
    text. Newlines are kept unless ``newlines`` is false (one-line cells and log lines).
    """
    return str(value).translate(_MULTI_LINE if newlines else _ONE_LINE)


def oneline(value: object) -> str:
    """:func:`printable` on one line: newlines escaped too."""
    return str(value).translate(_ONE_LINE)


class EscapeArgs(logging.Filter):
    """A logger filter that escapes the arguments of every record (job errors, task names,
    exception messages) as :func:`oneline` does, and the exception text it carries as
    :func:`printable` does: a job's data can never write escape sequences or forge a line in a
    log read on a terminal. Numbers stay numbers (``%.1f`` still works); the message template,
    written in skiplock's code, is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = {k: _arg(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = printable(logging.Formatter().formatException(record.exc_info))
        return True


def _arg(value: object) -> object:
    if value is None or isinstance(value, (int, float)):  # bool is an int
        return value
    return oneline(value)


#: The one filter skiplock's loggers share (adding it twice to a logger adds it once).
ESCAPE_ARGS = EscapeArgs()
