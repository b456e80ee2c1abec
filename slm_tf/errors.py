"""Errors caused by the user's input; their message names the problem and the fix."""


class UserError(ValueError):
    """Bad input (data, flags, paths). Entry points print the message, not a stack trace."""


class CorruptArtifactError(UserError):
    """A file slm_tf wrote (or should have written) that cannot be read back: truncated,
    overwritten, or from an incompatible version. The message names the file and the fix."""

    def __init__(self, path: str, problem: str, fix: str):
        super().__init__(f"{path}: {problem}; the file is corrupt or from an incompatible "
                         f"version. Fix: {fix}.")
        self.path = path
