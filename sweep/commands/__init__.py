"""One module per `sweep` subcommand: `add_arguments(parser)` and `command(args) -> int`."""
