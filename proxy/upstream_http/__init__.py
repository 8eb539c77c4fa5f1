"""The connection layer of every upstream call: a lean HTTP/1.1 transport for httpx on trio.

httpx stays the interface (its ``Request``, ``Response``, timeouts and exceptions); this replaces
httpcore beneath it. Measured on the 2-core bench machine, httpcore's pool and h11 cost ~280 µs of
CPU per request and grow with concurrency: every request rescans the whole pool under a lock. Here a
request takes an idle connection from a stack, writes its head and body in one ``send_all`` and
parses the answer with ``bytes`` methods, for about 40 µs (see ``tests/bench/RESULTS.md``).

Since upstreams are real servers on the internet, every failure is raised as the httpx exception
that names it, so callers see one error family. The parts, one job each:

- :mod:`~proxy.upstream_http.transport`: the pool per origin, opening connections (TCP, TLS) and
  the one exchange with its retry rule, which never sends a request twice that may have left;
- :mod:`~proxy.upstream_http.connection`: one keep-alive connection, its reads and writes;
- :mod:`~proxy.upstream_http.request`: the request as bytes, and sending it;
- :mod:`~proxy.upstream_http.response_head`: the answer's status line and headers;
- :mod:`~proxy.upstream_http.response_body`: the answer's body as it is read, with its framing.
"""

from proxy.upstream_http.request import build_request
from proxy.upstream_http.response_body import close_response, raw_stream
from proxy.upstream_http.transport import UpstreamTransport

__all__ = ["UpstreamTransport", "build_request", "close_response", "raw_stream"]
