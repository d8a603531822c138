"""The `jangkau` command line: operators' commands (serve, up, data, tune) and the buyer's."""
