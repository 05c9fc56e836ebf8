"""Helpers to run pocketkube processes from tests and benchmarks, and to clean up after them."""
