"""The dashboard's usage analytics: totals, time series, breakdowns, the request log and export.

Plain blocking functions of a read connection, run through ``ReadPool.run`` (``await
reads.run(partial(summary, since_ms=..., until_ms=...))``). Times are integer Unix ms and ranges
are half-open, ``[since_ms, until_ms)``. Bad arguments (an empty or inverted range, an unknown
bucket, dimension or status, a limit out of bounds, a malformed cursor) raise ``ValueError`` with
a message fit for a 400 response.

Two sources, two precisions:

- ``aggregates`` (``summary``, ``timeseries``, ``breakdown``) reads only ``usage_hourly``, at
  whole-hour resolution, with the p95 from ``latency_percentile``.
- ``request_log`` (``request_log``, ``request_detail``) and ``export`` (``export_page``,
  ``export_batches``, CSV and NDJSON) read ``llm_requests`` and honour the range to the
  millisecond; ``request_rows`` holds the row, the filter clause and the cursor they share.

``usage_filter`` says which calls a query counts. Every result is a frozen dataclass whose
``to_json()`` (``results``) returns a dict of JSON values (keys are the field names);
``json_lines`` encodes request rows the same way. Import each name from the module that does
the job: nothing is re-exported here.
"""
