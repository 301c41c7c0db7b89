"""Optimizers that tune a program's instructions, the guidance question among them, chosen by name.

Importing this package registers the built-in ones: `mipro`, `gepa`, `copro` (DSPy's) and `optuna`.
"""

from guided_profile.optimizers import copro, gepa, mipro, optuna_search  # noqa: F401  (register the built-ins)
from guided_profile.optimizers.base import (
    OPTIMIZERS,
    BudgetError,
    Optimizer,
    get_optimizer,
    optimizer_class,
    register_optimizer,
)
from guided_profile.optimizers.metric import TaskMetric
from guided_profile.optimizers.plan import CallPlan
from guided_profile.optimizers.runner import OptimizeResult, run_optimizer

__all__ = ["OPTIMIZERS", "BudgetError", "CallPlan", "Optimizer", "OptimizeResult", "TaskMetric", "get_optimizer",
           "optimizer_class", "register_optimizer", "run_optimizer"]
