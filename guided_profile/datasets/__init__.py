"""Loaders and builders: raw files in, `Example`s out."""

from guided_profile.datasets.example import Example, split_examples, user_split

__all__ = ["Example", "split_examples", "user_split"]
