"""The ``mock`` provider's embeddings: deterministic vectors from the text, in OpenAI's shape, so
tests and demo mode embed offline (the same text, the same vector)."""

from __future__ import annotations

from proxy.embedding_answers import MOCK_EMBEDDING_DIMENSIONS, mock_prompt_tokens, mock_vector
from proxy.embeddings import EmbeddingsRequest
from proxy.providers.base import PassedAnswer
from proxy.providers.embeddings_translated import answer_of, request_texts

__all__ = ["mock_embeddings", "mock_embeddings_size"]


def mock_embeddings(request: EmbeddingsRequest, model: str) -> PassedAnswer:
    """The mock's answer to ``request``. Blocking for a large batch (see
    :func:`mock_embeddings_size`)."""
    texts = request_texts(request, "mock")
    dimensions = request.view.dimensions or MOCK_EMBEDDING_DIMENSIONS
    vectors = [mock_vector(text, dimensions) for text in texts]
    return answer_of(vectors, request, model, mock_prompt_tokens(texts))


def mock_embeddings_size(request: EmbeddingsRequest) -> int:
    """About how many numbers the answer holds: what it costs to make."""
    count = len(request.view.input) if isinstance(request.view.input, list) else 1
    return count * (request.view.dimensions or MOCK_EMBEDDING_DIMENSIONS)
