"""The ``gitops`` command line: a client of the server's HTTP API (no Django here)."""
