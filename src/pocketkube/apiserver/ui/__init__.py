"""The live cluster map served under /ui/ (issue 12): static page, its JSON and SSE API, login links."""
