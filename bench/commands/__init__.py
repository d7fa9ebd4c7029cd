"""What each `aspp-bench` command does, one module per kind of work; bench.cli parses and
dispatches here."""
