"""The one exception type for a user's mistake.

A ``UserError`` is caught at the CLI edge and printed as one line, exit code 2, no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

USER_ERROR_EXIT = 2


class UserError(Exception):
    """A mistake in the user's input: a spec key, a file, a credential.

    The message must name the key path or file and say what to do.
    """


class StageError(Exception):
    """A run that cannot go on (missing or inconsistent shards): exit 1, message, no traceback.

    Not the user's typo, but not a bug either; the message says which object is wrong.
    """
