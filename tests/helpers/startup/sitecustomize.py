"""Imported by Python at start-up in the processes the tests launch (tests/helpers/startup is first on
their PYTHONPATH, helpers.child_env): installs the ulp-nudge switch there too (nudge.py); without its
variable it does nothing, and imports nothing (a process that never loads torch stays without it)."""

import os

if os.environ.get("LIT_ACTIVATION_TEST_NUDGE_ULPS"):  # nudge.VARIABLE
    from tests.helpers import nudge

    nudge.install_from_env()
