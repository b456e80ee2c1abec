"""Errors caused by the user's input; their message names the problem and the fix."""


class UserError(ValueError):
    """Bad input (data, flags, paths). Entry points print the message, not a stack trace."""
