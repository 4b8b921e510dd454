"""The tests, one package per package of the source (tests/README.md)."""
