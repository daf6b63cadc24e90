"""One module per CLI command, each with ``add_arguments(parser)`` and ``main(args) -> int``."""
