"""Imported by Python at start-up in the processes the DDP tests launch (tests/ is their PYTHONPATH):
installs the ulp-nudge switch there too (tests/nudge.py); without its variable it does nothing."""

import nudge

nudge.install_from_env()
