"""The training defaults `mtbranch train`, `sweep`, `distill` and `build` share (no torch: the CLI reads them).

`mtbranch build` proved them on the project's tasks (docs/build.md, "Defaults"): layer lr 3e-4, up to 8 epochs,
stop once the dev metric has not improved for 2 epochs. They held for classification, regression and token
classification alike, so one set serves every task type; full fine-tuning (every layer from depth 0, build's
teacher) keeps the lower 1e-4 its runs used.
"""

from __future__ import annotations

DEFAULT_LR = 3e-4
DEFAULT_FULL_LR = 1e-4
DEFAULT_EPOCHS = 8.0
DEFAULT_PATIENCE = 2
STILL_IMPROVING = "still improving: raise --epochs"
