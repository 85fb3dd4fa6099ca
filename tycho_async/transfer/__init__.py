"""The transfer engine: part planning, parallel multipart upload, parallel ranged download,
retries (one policy: retry.py), and one concurrency budget shared by every transfer of a command.

Names are loaded on first use (PEP 562), so that importing the planner (the config needs
its limits) does not load the engine: ``tychoreg --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

if TYPE_CHECKING:
    from .budget import Budget, BudgetStatistics
    from .engine import (
        Engine,
        EngineStatistics,
        Expected,
        NoProgress,
        ProgressSink,
        TaskProgress,
    )
    from .plan import Part, TransferSettings, plan_parts
    from .retry import CONFLICT, SETTLE, Backoff, RetryPolicy

_WHERE = {
    "Budget": "budget", "BudgetStatistics": "budget",
    "Engine": "engine", "EngineStatistics": "engine", "Expected": "engine",
    "NoProgress": "engine", "ProgressSink": "engine", "TaskProgress": "engine",
    "Part": "plan", "TransferSettings": "plan", "plan_parts": "plan",
    "Backoff": "retry", "CONFLICT": "retry", "RetryPolicy": "retry", "SETTLE": "retry",
}

__all__ = ["CONFLICT", "SETTLE", "Backoff", "Budget", "BudgetStatistics", "Engine",
           "EngineStatistics", "Expected", "NoProgress", "Part", "ProgressSink",
           "RetryPolicy", "TaskProgress", "TransferSettings", "plan_parts"]

__getattr__ = lazy_names(__name__, _WHERE)
