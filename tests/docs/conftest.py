"""What the doc tests share: the command line's parsers and every option path they accept, built once."""

from __future__ import annotations

import pytest

from tests.helpers.cli import subcommand_parsers
from tests.helpers.options import option_paths


@pytest.fixture(scope="session")
def parsers() -> dict:
    """Each subcommand's parser (predict, validate, compare, plan)."""
    return subcommand_parsers()


@pytest.fixture(scope="session")
def cli_options(parsers) -> frozenset[str]:
    """Every dotted option of any subcommand, through the options of each class a class option takes."""
    return frozenset().union(*(option_paths(parser) for parser in parsers.values()))
