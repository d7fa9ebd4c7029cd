"""Configure: what a run is. The config schema and its loading, validation messages, resolution
and run identity, the names factors and values are shown by, and the listings of fields and registries."""
