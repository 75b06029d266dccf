"""The `sentflow` command line (installed as the package `sentflow.cli`)."""
