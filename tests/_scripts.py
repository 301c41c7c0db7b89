"""Loading an experiments/ script as a module, for the tests of the reports it writes."""

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@contextmanager
def experiment_script(name: str) -> Iterator[ModuleType]:
    """experiments/NAME.py as a module, registered while in use (its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
