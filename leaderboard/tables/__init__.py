"""One module per bespoke table; `generic` serves every other task. Each has `section(cells, seeds) -> lines`."""
