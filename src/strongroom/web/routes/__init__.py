"""Console routes, one module per console section, all on :class:`ConsoleRoute`."""
