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


class UserErrors(UserError):
    """Several independent mistakes of one input (a spec's sections), each its own line.

    ``launcher validate`` lists every static mistake of a spec at once rather than the
    first; the CLIs print each message as its own ``error:`` line (exit 2), then each of
    ``notes`` (what was not checked because it depends on a part that is wrong) as a
    ``note:`` line.
    """

    def __init__(self, errors: list[UserError], notes: list[str] | None = None):
        self.messages: list[str] = []
        for error in errors:
            self.messages += error.messages if isinstance(error, UserErrors) else [str(error)]
        self.notes: list[str] = list(notes or [])
        # The text is the mistakes alone: one mistake reads as one line wherever it is shown (the API,
        # a log); the CLIs print ``notes`` after them, as ``note:`` lines.
        super().__init__("\n".join(self.messages))

    @staticmethod
    def raise_if_any(errors: list[UserError], notes: list[str] | None = None) -> None:
        """One error (and no notes) as itself, more as a ``UserErrors``, none: nothing."""
        if len(errors) == 1 and not notes:
            raise errors[0]
        if errors:
            raise UserErrors(errors, notes)


class StageError(Exception):
    """A run that cannot go on (missing or inconsistent shards): exit 1, message, no traceback.

    Not the user's typo, but not a bug either; the message says which object is wrong.
    """


#: The most characters of a user's value a message repeats; a spec can hold megabytes in one key.
SHOWN_CHARS = 60


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters: a message never echoes an unbounded value.

    Containers are cut before their repr is built in full (an alias bomb or a 5,000-digit
    integer never reaches ``repr``), so this costs the same whatever the value holds.
    """
    if isinstance(value, (list, tuple, dict, set)):
        text = _container_repr(value, limit)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        text = f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    elif isinstance(value, (str, bytes)) and len(value) > limit:
        text = repr(value[:limit])
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _container_repr(value: object, limit: int) -> str:
    brackets = {list: "[]", tuple: "()", dict: "{}", set: "{}"}.get(type(value), "[]")
    parts: list[str] = []
    size = 0
    items = value.items() if isinstance(value, dict) else value  # type: ignore[attr-defined]
    for item in items:
        part = (f"{shown(item[0], limit)}: {shown(item[1], limit)}" if isinstance(value, dict)
                else shown(item, limit))
        parts.append(part)
        size += len(part) + 2
        if size > limit:
            parts.append("...")
            break
    return brackets[0] + ", ".join(parts) + brackets[1]


#: A stage that cannot succeed because another stage of its run failed or is gone (the merge pod
#: whose evaluate Job failed or was deleted): a retried pod would fail the same way, so the merge
#: Job's pod failure policy fails the Job at once on this code (FailJob), as on a user error.
UPSTREAM_FAILED_EXIT = 3


class UpstreamFailed(StageError):
    """What a stage waits for will never come: another stage of the run failed or is gone."""

    exit_code = UPSTREAM_FAILED_EXIT
