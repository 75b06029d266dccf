"""`python -m sentflow.cli` runs the command line."""

from .main import main

main()
