"""The connector conformance suite, as a pytest plugin."""
