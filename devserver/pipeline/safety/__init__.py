"""Safety filters: the stage-1 §86a term filter and the stage-3 age-level filter."""

from __future__ import annotations

from ._filters import SAFETY_LEVELS, AgeFilter, Stage1Filter, Verdict
from ._terms import TermList, normalise

__all__ = ["SAFETY_LEVELS", "AgeFilter", "Stage1Filter", "TermList", "Verdict", "normalise"]
