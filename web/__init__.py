"""The front end: the lean ``/v1`` ASGI path, the Quart-Trio app, health endpoints."""
