"""Locust load tests of the jangkau gRPC services.

`python -m loadtests.run` (what `make loadtest` runs) starts the services on free
loopback ports, or targets running ones, and drives them with the users of
`loadtests.locustfile` through Locust's library API. Importing
`loadtests.grpc_user` monkey-patches the process with gevent (Locust does so on
import), so this package's `__init__` imports nothing: `loadtests.echo` stays a
plain threaded gRPC server.
"""
