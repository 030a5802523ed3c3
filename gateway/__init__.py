"""recordgate: a realtime data server speaking the deepstream protocol."""

__version__ = "0.1.0"
