"""The tests, one package per package of the source (docs/development.md says how to run them)."""
