"""The time-vs-number-of-tasks figure of a bench result (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG of ms per batch vs number of tasks for the three ways of serving (matplotlib, written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtbranch.io.atomic import write_bytes_atomic

    curve = result["task_curve"]
    labels = {"composed": "composed (one model)", "standalone": "unmerged branches (one model per task)",
              "full": "single-task serving (full model per task)"}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label in labels.items():
        if key in curve:
            ax.plot(curve["tasks"], curve[key], marker="o", label=label)
    cfg = result["config"]
    ax.set_xlabel("number of tasks answered")
    ax.set_ylabel(f"ms per batch ({cfg['batch_size']} x {cfg['seq_len']} tokens)")
    ax.set_title(f"{result['scenario']}: time vs tasks ({cfg['device']}, {cfg['threads']} threads)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = Path(path)
    write_bytes_atomic(out, buf.getvalue())
    return out
