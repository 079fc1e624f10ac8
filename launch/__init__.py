"""The command line, the embedded runner and the server launchers."""
