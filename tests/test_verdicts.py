"""`clean_message`: text from inside the sandbox made safe for the feedback and the CSV reports.

A failing check's message can hold anything the student's code printed or raised: colours,
control characters, megabytes of text, or a cell that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import pytest

from grader.grading import verdicts

clean = verdicts.clean_message
MAX = verdicts.MAX_MESSAGE


def test_plain_text_is_kept():
    assert clean("Expected shape (2, 3), got (3, 2).") == "Expected shape (2, 3), got (3, 2)."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\x1b[31mAssertionError\x1b[0m: wrong", "AssertionError: wrong"),
        ("\x1b[1;32;40mbold green\x1b[m", "bold green"),
        ("\x1b[2K\x1b[1Aup and clear", "up and clear"),
        ("\x1b[38;5;196mred\x1b[39m", "red"),
    ],
    ids=["colour", "several-parameters", "cursor", "256-colours"],
)
def test_ansi_sequences_are_removed(text, expected):
    assert clean(text) == expected


def test_other_escape_sequences_are_made_harmless():
    """Sequences other than CSI (a window-title OSC here) are not parsed, but lose their control
    characters, so nothing reaches a terminal or a page as a control."""
    cleaned = clean("\x1b]0;owned\x07text")
    assert "\x1b" not in cleaned and "\x07" not in cleaned and cleaned.endswith("text")


@pytest.mark.parametrize(
    "char", ["\x00", "\x07", "\x08", "\r", "\x0b", "\x0c", "\x7f", "\x9b", "\u200b", "\u202e", "\u2028", "\ufeff"],
    ids=["nul", "bell", "backspace", "cr", "vt", "ff", "del", "c1-csi", "zero-width", "rtl-override",
         "line-separator", "bom"],
)
def test_unprintable_characters_become_question_marks(char):
    assert clean(f"a{char}b") == "a?b"


def test_newlines_tabs_and_unicode_text_are_kept():
    assert clean("line 1\n\tline 2 \u2014 caf\u00e9 \u4e2d\u6587") == "line 1\n\tline 2 \u2014 caf\u00e9 \u4e2d\u6587"


def test_surrounding_whitespace_is_stripped():
    assert clean("\n\n  message \t\n") == "message"


def test_messages_are_cut_to_the_limit():
    assert clean("x" * MAX) == "x" * MAX
    cut = clean("y" * (MAX + 1))
    assert len(cut) == MAX and cut == "y" * (MAX - 3) + "..."
    assert len(clean("z" * 10_000_000)) == MAX


def test_the_cut_comes_after_cleaning():
    """Colour codes do not count towards the limit; stripped whitespace does not either."""
    assert clean("\x1b[31m" * 100 + "x" * MAX) == "x" * MAX
    assert clean(" " * 100 + "x" * MAX) == "x" * MAX


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_spreadsheet_formulas_are_quoted(prefix):
    formula = f'{prefix}HYPERLINK("http://evil.example", "click")'
    assert clean(formula) == "'" + formula


@pytest.mark.parametrize("text", ["  =1+1", "\t=1+1", "\n=1+1", "\x1b[31m=1+1"],
                         ids=["spaces", "tab", "newline", "colour"])
def test_a_formula_hidden_behind_whitespace_or_colour_is_quoted(text):
    assert clean(text) == "'=1+1"


@pytest.mark.parametrize("text", ["a = 1", "x-1", "1+1", "'=quoted already", "email me@example.com"])
def test_formula_characters_later_in_the_text_are_fine(text):
    assert clean(text) == text


@pytest.mark.parametrize("value, expected", [(None, "None"), (42, "42"), (ValueError("bad"), "bad"), ("", "")])
def test_anything_is_turned_into_text(value, expected):
    assert clean(value) == expected


@pytest.mark.parametrize("length", [MAX - 1, MAX, MAX + 1, 2 * MAX])
def test_a_quoted_formula_stays_within_the_limit(length):
    text = "=" + "x" * (length - 1)
    cleaned = clean(text)
    assert len(cleaned) <= MAX and cleaned.startswith("'=")
    assert cleaned == ("'" + text if length < MAX else "'" + text[: MAX - 4] + "...")


def test_the_checks_library_loads_once_when_judges_start_together():
    """Judges run in threads: the first ones to start must not load the checks library over each other."""
    from concurrent.futures import ThreadPoolExecutor

    from grader.grading import verdicts

    verdicts._trusted_checks.cache_clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        modules = list(pool.map(lambda _: verdicts.trusted_checks(), range(8)))
    assert all(module is modules[0] for module in modules)
    assert "groupnorm" in modules[0].EXERCISES
