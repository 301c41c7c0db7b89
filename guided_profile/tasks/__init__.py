"""Task registry: the built-in tasks, by name, listed in this one place.

Adding a task is one module under `tasks/` (a `Task` subclass; see the README's "Adding a task") and
its class in `BUILT_IN` below.  `register_task` adds a task from outside the package the same way.
"""

from guided_profile.tasks.base import TASKS, ChoiceTask, Task, get_task, register_task
from guided_profile.tasks.dialogue import DialogueTask
from guided_profile.tasks.paraphrase import ParaphraseTask
from guided_profile.tasks.preference import PreferenceTask

BUILT_IN: tuple[type[Task], ...] = (PreferenceTask, ParaphraseTask, DialogueTask)
for _task in BUILT_IN:
    register_task(_task)

__all__ = ["BUILT_IN", "TASKS", "ChoiceTask", "Task", "get_task", "register_task"]
