"""`pods/exec`, `pods/attach` and `pods/portforward`: the client's protocol ends here and the
stream is relayed to the node agent that runs the pod."""
