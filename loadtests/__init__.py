"""Locust load tests of the jangkau gRPC services.

`python -m loadtests.run` (what `make loadtest` runs) starts the services on free
loopback ports, or targets running ones, and drives them with the users of
`loadtests.locustfile` through Locust's library API. Importing
`loadtests.grpc_user` monkey-patches the process with gevent (Locust does so on
import), so this package's `__init__` imports nothing: `loadtests.echo` stays a
plain threaded gRPC server.

The one thing it does: switch off gRPC's fork handlers for this process (before
gRPC is imported). gevent's patched `subprocess` forks without `vfork`, so gRPC's
handlers run in the child between fork and exec, where its poller can abort the
child (SIGABRT, "epoll_wait error: Bad file descriptor") when the parent has
calls in flight: a service started by a load run died at start-up that way.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
