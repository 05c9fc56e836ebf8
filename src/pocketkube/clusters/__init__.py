"""Named clusters and their lifecycle: `up --name/--detach`, `down`, `status`, `list`, `logs`.

Pure decisions (names.py, plans.py, the table of status.py) are separate from the I/O that reads
state files, signals processes and sweeps what a killed cluster left (state.py, lifecycle.py).
This package is wiring: it may import anything, but the `status`/`list` path imports only the
standard library and yaml, so it answers fast.
"""
