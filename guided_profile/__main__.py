"""`python -m guided_profile` is the `guided-profile` command."""

from guided_profile.cli import entry

entry()
