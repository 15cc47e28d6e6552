"""`python -m painterly` (and `torchrun -m painterly`) runs the CLI."""

from .cli import main

main()
