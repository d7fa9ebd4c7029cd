"""Results: the run folders (file names, locks, the config a folder is bound to) and the results
table read from them (one row per run, rows parsed back into configs, a saved table loaded)."""
