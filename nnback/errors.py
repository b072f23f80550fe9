"""User-facing errors and the process exit codes that go with them.

Anything a user can fix (a config key, a data file, a command-line argument) raises a
subclass of ``NnbackError``; the CLI prints its message on one line and exits with its
``exit_code``. Any other exception is a bug in nnback.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_LOCKED = 4
EXIT_TIME_LIMIT = 5
EXIT_IO = 6
EXIT_SIGHUP = 129
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def one_line(text: str) -> str:
    """``text`` with every character that would break the line or hide part of it (a
    newline, tab, ANSI escape, U+2028, a bidirectional override) written as its Python
    escape, ``\\n``: paths, keys and names from configs and files stay visible and on one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class NnbackError(Exception):
    """An error the user can fix; its message is one line naming what and where (control
    characters in it, from a path or name the user gave, are escaped)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class ConfigError(NnbackError):
    """The experiment file or a --set override is invalid.

    Args:
        messages: one line per problem, e.g. ``"cfg.yaml: optimizer.lr: must be > 0"``.
    """

    def __init__(self, messages):
        if isinstance(messages, str):
            messages = [messages]
        self.messages = [one_line(str(message)) for message in messages]
        Exception.__init__(self, "\n".join(self.messages))

    def __reduce__(self):
        return type(self), (self.messages,)


class DataError(NnbackError):
    """A data file or data set is missing, unreadable or holds invalid values."""


class RunIOError(NnbackError):
    """The run folder cannot be written (permissions, full disk)."""

    exit_code = EXIT_IO


class LockedError(NnbackError):
    """Another live process holds the run folder's lock."""

    exit_code = EXIT_LOCKED


class CheckpointError(NnbackError):
    """A checkpoint is missing, truncated or fails its checksum."""


class ExportError(NnbackError):
    """A model holds a layer or option the export format cannot express."""
