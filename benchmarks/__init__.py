"""Benchmarks: print figures beside their goals. They never fail a test run."""
