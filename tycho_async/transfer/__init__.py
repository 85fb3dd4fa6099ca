"""The transfer engine: part planning, parallel multipart upload, parallel ranged download,
retries, and one concurrency budget shared by every transfer of a command."""

from .budget import Budget, BudgetStatistics
from .engine import Engine, EngineStatistics, Expected, NoProgress, ProgressSink, TaskProgress
from .plan import Part, TransferSettings, plan_parts

__all__ = [
    "Budget",
    "BudgetStatistics",
    "Engine",
    "EngineStatistics",
    "Expected",
    "NoProgress",
    "Part",
    "ProgressSink",
    "TaskProgress",
    "TransferSettings",
    "plan_parts",
]
