"""How the command line reports bad input: one line on stderr, exit status 2."""

USAGE_ERROR_STATUS = 2


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def one_line(error):
    """The message of `error` on one line (Keras's messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__
