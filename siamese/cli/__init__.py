"""The command-line tools, one module per command; each parses options and makes one library call."""
