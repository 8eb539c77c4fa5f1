"""What Gemini's and Ollama's adapters share to embed in their own APIs and answer in OpenAI's
shape: the texts of a request, and the answer built from the vectors."""

from __future__ import annotations

from proxy.embedding_answers import embeddings_body
from proxy.embedding_inputs import MAX_EMBEDDING_INPUTS, texts_of
from proxy.embeddings import EmbeddingsRequest
from proxy.providers.base import PassedAnswer
from proxy.providers.embeddings_passthrough import embeddings_usage

__all__ = ["answer_of", "request_texts"]


def request_texts(request: EmbeddingsRequest, provider: str) -> list[str]:
    """The texts to embed; a 400 naming ``input`` for token arrays (OpenAI's alone)."""
    return texts_of(request.view.input, provider=provider, max_items=MAX_EMBEDDING_INPUTS)


def answer_of(
    vectors: list[list[float]], request: EmbeddingsRequest, model: str, prompt_tokens: int
) -> PassedAnswer:
    """OpenAI's answer for ``vectors``, in the encoding the client asked for."""
    body = embeddings_body(
        vectors,
        model=model,
        prompt_tokens=prompt_tokens,
        encoding_format="base64" if request.base64 else "float",
    )
    return PassedAnswer(body, embeddings_usage(prompt_tokens))
