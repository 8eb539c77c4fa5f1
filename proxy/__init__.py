"""llm-proxy: a self-hosted LLM gateway on trio (vocabulary layer: pure types and functions)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llm-proxy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
