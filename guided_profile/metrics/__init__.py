"""Metrics shared by tasks, and the statistics reported beside them."""

from guided_profile.metrics.stats import bootstrap_ci

__all__ = ["bootstrap_ci"]
