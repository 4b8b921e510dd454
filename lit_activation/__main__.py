"""`python -m lit_activation ...` is the `lit-activation` command."""

from lit_activation.cli import main

main()
