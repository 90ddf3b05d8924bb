"""Serving: the HTTP app, its request/response schema, request batching and the Ray Serve deployment."""
