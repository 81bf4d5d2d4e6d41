"""CLI subcommands, one module per stage (registered in ``valor_data.cli.COMMANDS``)."""
