"""Docstrings, comments and messages of the library state contracts, not history or measurements.

Every `keras_kd/**/*.py` file is read as text, never imported: its comments
and string literals (docstrings, error and warning messages, help texts) must
not cite an issue number ("issue 15", "#15"), a timing ("0.2 ms", "a tenth
of a millisecond", "microseconds a step") or a benchmark figure ("1.05x the
student", "97% test accuracy", "an accuracy of 0.474"). Such numbers age the
day they are written; they belong on the results pages (docs/results/), next
to the command and the date that produced them, and a docstring that needs
one links there.
"""

import io
import pathlib
import re
import tokenize

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_kd"

# A number, not a bound ("> 0 s" is a contract) nor part of a name.
_NUMBER = r"(?<![\w.])(?<![<>=] )(?<![<>=])\d+(?:[.,]\d+)*"
_TIME_UNIT = r"(?:ms|µs|μs|us|ns|s|secs?|seconds?|milliseconds?|microseconds?|nanoseconds?|minutes?|mins?|hours?)"
_FRACTION = r"(?:tenths?|quarters?|half|thirds?|hundredths?|thousandths?)"
_SMALL_UNIT = r"(?:milli|micro|nano)seconds?"
_QUALITY = r"(?:accurac(?:y|ies)|agreement|errors?|bits per byte)"

# What is forbidden, as (kind, pattern): case-insensitive, each matched
# against one comment or one string literal (a docstring, a message).
FORBIDDEN = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("an issue number", r"\bissues?\s*#?\d+|(?<![\w&#/])#\d{1,4}\b(?!-)"),
        ("a timing", _NUMBER + r"\s*" + _TIME_UNIT + r"(?!\w)"),
        ("a timing", r"\b(?:an?|one|two|three)\s+" + _FRACTION + r"\s+of\s+an?\s+" + _SMALL_UNIT),
        ("a timing", r"\b(?:a few|several|tens of|hundreds of|fractions? of an?)\s+" + _SMALL_UNIT),
        # "microseconds a step" is a measurement, "in milliseconds per batch" a unit.
        ("a timing", r"(?<!\bin )\b" + _SMALL_UNIT + r"\s+(?:a|per|each|apiece)\b"),
        (
            "a benchmark figure",
            _NUMBER + r"\s*x\s+(?:the|as|over|of|faster|slower|cheaper|dearer|more|less|fewer|smaller|larger)\b",
        ),
        ("a benchmark figure", _NUMBER + r"\s*%\s+(?:\w+\s+){0,2}" + _QUALITY),
        ("a benchmark figure", r"\b" + _QUALITY + r"\s+(?:[a-z-]+\s+){0,3}\d*\.\d+"),
    )
)

# Lines whose match is a contract, not a measurement, as (file, text on the
# line, why). Keep this list short; each entry says why it is allowed.
ALLOWED = ()
# Python 3.12 splits an f-string into tokens; its text is FSTRING_MIDDLE.
_TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def offences(source):
    """`(line number, kind, matched text)` for each forbidden text in the comments and strings of `source`."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _TEXT_TOKENS:
            continue
        for kind, pattern in FORBIDDEN:
            for match in pattern.finditer(token.string):
                line_number = token.start[0] + token.string.count("\n", 0, match.start())
                found.append((line_number, kind, " ".join(match.group(0).split())))
    return found


def library_offences():
    """One line per offence in the library, `file:line: kind 'text': the line`, allowed lines left out."""
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for line_number, kind, text in offences(source):
            line = lines[line_number - 1].strip()
            if not any(relative == file and allowed in line for file, allowed, _ in ALLOWED):
                rows.append(f"{relative}:{line_number}: {kind} {text!r}: {line}")
    return rows


def test_no_issue_numbers_timings_or_benchmark_figures_in_the_library():
    assert len(list(PACKAGE.rglob("*.py"))) > 20
    rows = library_offences()
    assert not rows, (
        "Docstrings, comments and messages state contracts: link to docs/results/ for measured "
        "numbers, and leave issue numbers to the commit history.\n" + "\n".join(rows)
    )
    # An allowance whose line was edited away would otherwise excuse a new one.
    stale = [(file, text) for file, text, _ in ALLOWED if text not in (PACKAGE.parent / file).read_text()]
    assert not stale, f"Allowed lines no longer in the library; remove them from ALLOWED: {stale}"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("# A fix for issue 15.", "an issue number"),
        ("# See issues 12-15.", "an issue number"),
        ("# As #15 asked.", "an issue number"),
        ('"""Issue #4 part 5."""', "an issue number"),
        ('"""Costs 0.2 ms a step."""', "a timing"),
        ('"""0.22 s for 4.7M weights."""', "a timing"),
        ('"""Takes 40 seconds."""', "a timing"),
        ('"""150 µs."""', "a timing"),
        ('"""About a tenth of a millisecond a step on a CPU."""', "a timing"),
        ('"""A\n    quarter of a millisecond."""', "a timing"),
        ('"""Costs microseconds a step."""', "a timing"),
        ("# several microseconds apiece", "a timing"),
        ('"""The cached step is 1.05x the student\'s."""', "a benchmark figure"),
        ("# a CRC-32, about 15x cheaper than SHA-256", "a benchmark figure"),
        ('"""It reaches about 97% test accuracy."""', "a benchmark figure"),
        ('warn("reached a held-out accuracy of 0.461 and 0.474")', "a benchmark figure"),
        ('warn(f"top-{k}: a quarter of a millisecond a step")', "a timing"),
    ],
)
def test_each_kind_of_offence_is_caught(source, kind):
    assert kind in [found_kind for _, found_kind, _ in offences(source + "\n")]


@pytest.mark.parametrize(
    "source",
    [
        '"""timeout: Seconds to wait for the lock."""',
        '"""Latency in milliseconds per batch, p50 over 30 batches."""',
        "# A 2x64 MLP; a 1x1 convolution; a log scale past 100x.",
        '"""Issue a warning; see the issue tracker."""',
        "color = '#1f77b4'",
        '"""Shape (batch, 10), 3 steps, seed 0, 20 % of the rows held out, dropout 50%."""',
        '"""Accuracies in [0, 1], agreement in %."""',
        'raise ValueError(f"timeout must be > 0 s; got {timeout}.")',
    ],
)
def test_contracts_are_not_flagged(source):
    assert offences(source + "\n") == []
