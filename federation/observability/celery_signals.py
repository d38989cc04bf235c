"""Celery's side of metrics and logs: failures and retries counted by task name (a registered
task's name, so a bounded label), and the running task named on its log lines.

Connected once per process by ``federation.apps`` (web processes send tasks, and run them
eagerly in the demo; workers run them). Receivers never raise: a signal receiver's error would
be logged by Celery against the task.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, task_retry

from federation.observability import context, metrics


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def _on_failure(sender: Any = None, **_: Any) -> None:
    metrics.record_task_failure(_task_name(sender))


def _on_retry(sender: Any = None, **_: Any) -> None:
    metrics.record_task_retry(_task_name(sender))


def _on_prerun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    context.task.set(f"{_task_name(sender)}[{task_id}]" if task_id else _task_name(sender))


def _on_postrun(**_: Any) -> None:
    context.task.set(None)


def connect() -> None:
    # weak=False: the receivers are module functions, kept alive anyway; dispatch_uid makes a
    # second connect() (tests, reloads) a no-op.
    task_failure.connect(_on_failure, weak=False, dispatch_uid="fedaccess.metrics.failure")
    task_retry.connect(_on_retry, weak=False, dispatch_uid="fedaccess.metrics.retry")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="fedaccess.log.prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="fedaccess.log.postrun")
