"""One module per architecture; each only moves bytes between sockets and the core."""
