"""Provider wire adapters: pure translation between our chat types and each upstream's protocol."""

from proxy.providers.base import ChunkParser, UpstreamCall, WireAdapter

__all__ = ["ChunkParser", "UpstreamCall", "WireAdapter"]
