"""A minimal service that embeds a composed model: load once, warm up, answer from many threads.

    python examples/service/embed.py out/composed "I loved this film" "Paris is lovely"

For HTTP with request batching use `mtbranch serve` (docs/serving.md); this shows the embedding API itself.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mtbranch


class TaskService:
    def __init__(self, artifact: str) -> None:
        self.model = mtbranch.load(artifact)  # verifies every sha256 against the lock file
        self.single_tasks = [b.name for b in self.model.branches if b.manifest.tokenizer.input_signature == "single"]
        self.model.predict(["warm-up"], tasks=self.single_tasks)  # first call pays tokenizer/kernel set-up

    def handle(self, text: str, tasks: list[str] | None = None) -> dict[str, Any]:
        return self.model.predict([text], tasks=tasks or self.single_tasks)[0]


def main(argv: list[str]) -> None:
    service = TaskService(argv[0])
    with ThreadPoolExecutor(max_workers=4) as pool:  # predict is safe to call concurrently
        results = list(pool.map(service.handle, argv[1:]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
