"""`python -m guided_profile` is the `guided-profile` command."""

import sys

from guided_profile.cli import main

sys.exit(main())
