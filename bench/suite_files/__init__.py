"""Built-in suite declarations (TOML), read by bench.suites."""
