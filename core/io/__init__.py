"""Files on disk: atomic writes, JSON and path helpers, the safetensors header reader."""
