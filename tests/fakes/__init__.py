"""Fake external services that tests run the real client libraries against."""
