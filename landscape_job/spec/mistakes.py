"""The static mistakes of one spec, collected section by section, so ``launcher validate`` lists
them all at once (``UserErrors``) instead of stopping at the first."""

from __future__ import annotations

from typing import Callable, TypeVar

from landscape_job.base.errors import UserError, UserErrors

T = TypeVar("T")


class Mistakes:
    """The static mistakes of one spec, collected section by section so ``validate`` lists
    them all at once; a section that needs one that failed is skipped and said to be."""

    def __init__(self) -> None:
        self.errors: list[UserError] = []
        self.skipped: list[str] = []

    def check(self, what: Callable[[], T]) -> T | None:
        """``what()``, or None after recording its mistake(s)."""
        try:
            return what()
        except UserError as err:
            self.errors.append(err)
            return None

    def skip(self, section: str, needs: list[str]) -> None:
        """``section`` is not checked: it depends on ``needs``, which failed above."""
        self.skipped.append(f"{section}: not checked, it depends on {' and '.join(needs)} (wrong above)")

    def raise_if_any(self) -> None:
        UserErrors.raise_if_any(self.errors, self.skipped)
