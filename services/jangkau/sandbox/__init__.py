"""The sandbox market service: the project's market simulator behind a platform-like
network API (`jangkau serve sandbox`), the built-in default platform."""
