"""A wheel (not only the editable install the tests run from) carries every package of the library."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[1]


def test_every_package_directory_is_listed_for_setuptools():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("lit_activation/**/__init__.py")}
    on_disk |= {name for name, folder in config.get("package-dir", {}).items() if (ROOT / folder / "__init__.py").is_file()}
    assert on_disk - listed == set(), "packages a wheel would leave out: add them to [tool.setuptools] packages"
    assert listed - on_disk == set(), "listed packages with no directory"
