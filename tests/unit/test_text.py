"""printable(): what job data may not send to a terminal comes out as visible escapes."""

from __future__ import annotations

import logging

import pytest

from skiplock._core.text import EscapeArgs, oneline, printable

DANGEROUS = {
    "\x1b": "\\x1b",  # ESC: escape sequences, OSC 8 hyperlinks
    "\x9b": "\\x9b",  # CSI in one byte
    "\x07": "\\x07",
    "\x7f": "\\x7f",
    "\r": "\\x0d",  # rewrites the line from its start
    "\u202a": "\\u202a",
    "\u202b": "\\u202b",
    "\u202c": "\\u202c",
    "\u202d": "\\u202d",
    "\u202e": "\\u202e",  # right-to-left override: "exe.txt" reads "txt.exe"
    "\u2066": "\\u2066",
    "\u2067": "\\u2067",
    "\u2068": "\\u2068",
    "\u2069": "\\u2069",
    "\u200e": "\\u200e",
    "\u200f": "\\u200f",
    "\u061c": "\\u061c",
    "\u200b": "\\u200b",  # zero-width space
    "\u200c": "\\u200c",
    "\u200d": "\\u200d",
    "\u2060": "\\u2060",
    "\ufeff": "\\ufeff",
    "\u2028": "\\u2028",  # line separator
    "\u2029": "\\u2029",
    "\u00ad": "\\xad",  # soft hyphen (format character)
    "\U000e0041": "\\U000e0041",  # a tag character: hidden ASCII
    "\ud800": "\\ud800",  # a lone surrogate cannot even be written
    "\u3164": "\\u3164",  # Hangul filler: a blank letter
}


@pytest.mark.parametrize(("char", "shown"), DANGEROUS.items())
def test_every_dangerous_character_is_escaped(char, shown):
    assert printable(f"a{char}b") == f"a{shown}b"
    assert oneline(f"a{char}b") == f"a{shown}b"


def test_ordinary_text_is_left_alone_and_escaping_twice_changes_nothing():
    text = "café 日本語 emoji 😀 tab-free [bold] back\\slash"
    assert printable(text) == text
    hostile = "".join(DANGEROUS) + "\nnext"
    assert printable(printable(hostile)) == printable(hostile)
    assert printable("a\nb") == "a\nb"
    assert oneline("a\nb") == "a\\x0ab"


def test_the_log_filter_escapes_arguments_and_keeps_numbers():
    record = logging.LogRecord(
        "skiplock.worker",
        logging.INFO,
        __file__,
        1,
        "job %s failed in %.1fs: %s",
        (7, 1.25, "\x1b[2J\nforged"),
        None,
    )
    assert EscapeArgs().filter(record)
    assert record.getMessage() == "job 7 failed in 1.2s: \\x1b[2J\\x0aforged"
