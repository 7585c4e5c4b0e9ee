"""The lab's one error type: something it needs is missing or failed; the message says what and how to fix it."""


class LabError(RuntimeError):
    """A lab set-up or step that failed; the message names the command, device or value."""
