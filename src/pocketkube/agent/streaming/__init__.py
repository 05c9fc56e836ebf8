"""The node agent's streaming endpoints (exec, attach, port-forward) that the API server relays to."""
