"""Task registry. Importing this package registers the built-in tasks."""

from guided_profile.tasks import dialogue, paraphrase, preference  # noqa: F401
from guided_profile.tasks.base import TASKS, ChoiceTask, Task, get_task, register_task

__all__ = ["TASKS", "ChoiceTask", "Task", "get_task", "register_task"]
