"""The one error type that front ends turn into a one-line message and exit status 2."""


class UserError(ValueError):
    """Bad input from a user (file, row, column, option). The message is one line naming the culprit."""
