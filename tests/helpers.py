"""Build branch artifacts on a tiny trunk for tests (random weights so every branch differs)."""

from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch

from mtbranch.branch.factory import branch_manifest
from mtbranch.branch.model import BranchModule, save_branch
from mtbranch.plugins.manager import get_plugin_manager
from mtbranch.spec.heads import ClassificationHead, RegressionHead, TokenClassificationHead
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

HEADS = {
    "classification": lambda: ClassificationHead(labels=["negative", "positive"]),
    "multilabel": lambda: ClassificationHead(labels=["a", "b", "c"], multi_label=True),
    "regression": lambda: RegressionHead(),
    "token_classification": lambda: TokenClassificationHead(labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
}


def make_branch(trunk_dir: Path, out: Path, *, name: str, depth: int, layers: int,
                head: str = "classification", pooling: str = "cls", signature: str = "single",
                seed: int = 0, projection: bool = True, max_length: int | None = 64, **extra: Any) -> Path:
    src = load_trunk_source(trunk_dir)
    tok = load_tokenizer(trunk_dir)
    spec = HEADS[head]()
    m = branch_manifest(src, tok, name=name, attach_depth=depth, num_layers=layers, head=spec, pooling=pooling,
                        projection=projection, max_length=max_length, input_signature=signature, **extra)
    torch.manual_seed(seed)
    module = BranchModule(m, get_plugin_manager().head_type(spec.type))
    with torch.no_grad():  # spread the weights so outputs are far from uniform
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    save_branch(module, out)
    return out


def make_serving_artifact(trunk_dir: Path, base: Path) -> Path:
    """A composed artifact with a single-text, a token and a pair branch (what the serving tests send to)."""
    from mtbranch.composition.artifact import compose, save_composed

    dirs = [make_branch(trunk_dir, base / "sentiment", name="sentiment", depth=2, layers=1, seed=1),
            make_branch(trunk_dir, base / "entities", name="entities", depth=3, layers=1,
                        head="token_classification", seed=2),
            make_branch(trunk_dir, base / "similarity", name="similarity", depth=2, layers=1, head="regression",
                        signature="pair", pooling="mean", seed=3)]
    model = compose(load_trunk_source(trunk_dir), [(d, "directory") for d in dirs])
    save_composed(model, base / "composed")
    return base / "composed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def results_close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    """Equal structure and strings; floats within tol (a merged batch pads differently)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(results_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(results_close(x, y, tol) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class Server:
    """uvicorn in a thread, on a free loopback port, ready once /ready answers 200 (the serving tests' server)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        import httpx

        self.thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def stats(self) -> dict[str, Any]:
        import httpx

        return dict(httpx.get(self.url + "/stats").json())
