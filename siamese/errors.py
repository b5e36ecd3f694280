"""The one exception type the command-line tools turn into a one-line message."""


class SiameseError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""
