"""Imported by Python at start-up in the processes the tests launch (tests/helpers/startup is first on
their PYTHONPATH, helpers.child_env): installs the ulp-nudge switch there too (nudge.py), and the
session's memo of tokenized corpora (tokens.py) once the module that tokenizes is imported. Without
their variables it does nothing, and it imports nothing itself (a process that never loads torch
stays without it)."""

import importlib.abc
import os
import sys

if os.environ.get("LIT_ACTIVATION_TEST_NUDGE_ULPS"):  # nudge.VARIABLE
    from tests.helpers import nudge

    nudge.install_from_env()


class _TokensOnImport(importlib.abc.MetaPathFinder):
    """Installs tokens.py's memo right after lit_activation.data.samples is first imported."""

    TARGET = "lit_activation.data.samples"

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        if name != self.TARGET:
            return None
        sys.meta_path.remove(self)  # the normal finders, from here on
        import importlib.util

        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            run(module)
            from tests.helpers import tokens

            tokens.install()

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("LIT_ACTIVATION_TEST_TOKENS"):  # tokens.VARIABLE
    sys.meta_path.insert(0, _TokensOnImport())
