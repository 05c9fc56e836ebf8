"""`pocketkube doctor`: what this host offers each mode, what a missing piece disables, and the fix.

facts.py holds what was observed (plain data, and pure parsers of /proc text), probes.py gathers
it (I/O, each probe bounded by a timeout, every source injectable for tests), checks.py turns
facts into a checklist (pure), mode.py picks the runtime and data plane `up` runs with and says
why in one line (pure), report.py renders the checklist as text or JSON, options.py (flags, cheap to
import) and command.py are the CLI.
`up` gathers the fast facts only (no kernel, port or route probes) and prints mode.py's line.
"""
