"""The transfer engine: part planning, parallel multipart upload (upload.py), parallel ranged
download (download.py), retries (one policy: retry.py), one concurrency budget shared by every
transfer of a command, and the progress protocols the engine reports through (sink.py).

Names are loaded on first use (PEP 562), so that importing the planner (the config needs
its limits) does not load the engine: ``tychoreg --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

if TYPE_CHECKING:
    from .budget import Budget, BudgetStatistics
    from .engine import Engine, EngineStatistics, Expected
    from .plan import Part, TransferSettings, plan_parts
    from .retry import CONFLICT, SETTLE, Backoff, RetryPolicy
    from .sink import NoProgress, ProgressSink, TaskProgress

_WHERE = {
    "Budget": "budget", "BudgetStatistics": "budget",
    "Engine": "engine", "EngineStatistics": "engine", "Expected": "engine",
    "NoProgress": "sink", "ProgressSink": "sink", "TaskProgress": "sink",
    "Part": "plan", "TransferSettings": "plan", "plan_parts": "plan",
    "Backoff": "retry", "CONFLICT": "retry", "RetryPolicy": "retry", "SETTLE": "retry",
}

__all__ = ["CONFLICT", "SETTLE", "Backoff", "Budget", "BudgetStatistics", "Engine",
           "EngineStatistics", "Expected", "NoProgress", "Part", "ProgressSink",
           "RetryPolicy", "TaskProgress", "TransferSettings", "plan_parts"]

__getattr__ = lazy_names(__name__, _WHERE)
