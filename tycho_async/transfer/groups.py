"""Task groups that raise one error, not an ExceptionGroup.

anyio wraps whatever a child raises in an ExceptionGroup; callers of the engine and the
registry want the one error that explains the failure (a TychoError when there is one),
so it is unwrapped here, once, where the group is opened.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from ..errors import TychoError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that best explains a group: a TychoError first, then any Exception."""
    leaves = _leaves(group)
    for kind in (TychoError, Exception):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    return group


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        error = first_error(group)
        if error is group:
            raise
        raise error from None
