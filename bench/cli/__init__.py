"""The `bench` command line: one module per subcommand."""
