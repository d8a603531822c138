"""Generated code of the jangkau v1 API (from protos/jangkau/v1 by `make protos`)."""
