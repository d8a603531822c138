"""jangkau: allocates an election campaign's ad budget across platforms and voter audiences."""

__version__ = "0.1.0"
