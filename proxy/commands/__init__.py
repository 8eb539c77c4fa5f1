"""The ``llm-proxy`` subcommands besides ``serve``, ``check-config`` and ``version`` (design §9).

One module per subcommand, each with ``add_parser(commands)`` for its options and
``run(args, config)`` returning the exit status; :mod:`proxy.cli` parses the command line, loads
the config and dispatches. ``clients``, ``users`` and ``backup`` work on the configured database
directly, so they also work while the server runs; ``monitor`` watches a running server's feed.
"""
