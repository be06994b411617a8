"""Loopback fakes of external services, started by the tests that need them."""
