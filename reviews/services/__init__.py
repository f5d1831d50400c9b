"""Writes of the reviews app: manual fixes (create, apply a page of changes, revert, carry forward)."""

from .fixes import (
    FixError,
    fixes_carry_forward,
    manual_fix_create,
    manual_fix_revert,
    manual_fixes_apply,
    review_decision_record,
)

__all__ = [
    "FixError",
    "fixes_carry_forward",
    "manual_fix_create",
    "manual_fix_revert",
    "manual_fixes_apply",
    "review_decision_record",
]
