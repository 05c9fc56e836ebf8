"""Wire protocols of Kubernetes' streaming subresources (exec, attach, port-forward), as leaf
libraries: SPDY/3.1 sessions and the WebSocket channel protocols. No I/O policy, nothing of ours."""
