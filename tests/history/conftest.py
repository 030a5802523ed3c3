"""History runs use the official JS client's installation from the interop tests."""

from tests.interop.conftest import node

__all__ = ["node"]
