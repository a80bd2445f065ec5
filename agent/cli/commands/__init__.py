"""One module per group of commands; each function takes (args, output) and returns an exit code."""
