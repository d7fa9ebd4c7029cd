"""Published tables of the five papers (../shared/papers), as CSV: facts for "paper vs measured"."""
