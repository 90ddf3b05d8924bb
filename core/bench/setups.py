"""The bench's setups: the scenario built on disk (the real load path), then each way of serving it.

* ``composed``   one ComposedModel: the trunk once per input signature, each branch forked at its depth.
* ``standalone`` the same branches unmerged: one model per task (trunk layers 1..d + the branch).
* ``full``       one fine-tuned transformers model per task with every trunk layer and a head.
* ``subset``     the composed model asked for its cheapest task only.
* ``one-branch`` vs ``hf-reference``: one branch composed vs transformers' ``BertForSequenceClassification``
  holding the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtbranch.bench.scenarios import BranchPlan, Scenario
from mtbranch.errors import UsageError
from mtbranch.spec.heads import REGRESSION, TOKEN_CLASSIFICATION

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel


def synthetic_config(family: str, dims: dict[str, int]) -> Any:
    """A transformers config of ``family`` with the scenario's dimensions (hidden size, layers, heads, FFN,
    vocabulary, positions) and the family's example settings (its record's ``example``)."""
    from transformers import AutoConfig

    from mtbranch.trunk.families import example_config

    cfg = example_config(family, **dims)
    return AutoConfig.for_model(cfg.pop("model_type"), **cfg)


def _synthetic_trunk(path: Path, config: dict[str, int], seed: int, family: str = "bert") -> Path:
    import torch
    from transformers import AutoModel, BertTokenizer  # the fast (tokenizers) one in transformers 5

    if (path / "model.safetensors").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(specials + [f"w{i}" for i in range(config["vocab_size"] - len(specials))]) + "\n")
    tok = BertTokenizer(vocab=str(vocab), do_lower_case=True, model_max_length=config["max_position_embeddings"])
    torch.manual_seed(seed)
    model = AutoModel.from_config(synthetic_config(family, config))  # transformers' own init: realistic magnitudes
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def _synthetic_branches(trunk: Any, tokenizer: Any, plans: Sequence[BranchPlan], root: Path,
                        seq_len: int) -> list[tuple[Path, str]]:
    from mtbranch.branch.factory import branch_manifest, init_from_trunk
    from mtbranch.branch.model import BranchModule, save_branch
    from mtbranch.plugins.manager import PluginManager
    from mtbranch.spec.heads import ClassificationHead, RegressionHead, TokenClassificationHead

    pm = PluginManager(autoload=False)
    out = []
    for p in plans:
        d = root / p.name
        if not (d / "manifest.json").is_file():
            head: Any = (RegressionHead() if p.head == REGRESSION else
                         TokenClassificationHead(labels=["O", "B-X", "I-X"]) if p.head == TOKEN_CLASSIFICATION
                         else ClassificationHead(labels=[f"l{i}" for i in range(p.labels)]))
            m = branch_manifest(trunk, tokenizer, name=p.name, attach_depth=p.depth, num_layers=p.layers,
                                head=head, pooling="cls", projection=True, max_length=seq_len)
            module = BranchModule(m, pm.head_type(head.type))
            init_from_trunk(module, trunk)  # the trunk's own layers d+1..d+n, as partial fine-tuning starts
            save_branch(module, d)
        out.append((d, "bench"))
    return out


def prepare(scenario: Scenario, workdir: Path, *, seq_len: int, seed: int = 0) -> tuple[Any, list[tuple[Path, str]]]:
    """The trunk source and branch directories the scenario runs on (built once under ``workdir``)."""
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.trunk.tokenizer import load_tokenizer

    if not scenario.synthetic:
        from mtbranch.plugins.manager import get_plugin_manager
        from mtbranch.trunk.choose import choose_trunk
        from mtbranch.validation.sources import collect_branches

        pm = get_plugin_manager()
        branches = collect_branches(plugin_manager=pm)
        if not branches:
            raise UsageError("the 'real' scenario needs installed branch plugins",
                             hint="pip install the example plugins (make demo), or pick a synthetic scenario")
        return choose_trunk(None, branches, pm, required=True), branches
    root = workdir / scenario.name if scenario.family == "bert" else workdir / scenario.name / scenario.family
    tdir = _synthetic_trunk(root / "trunk", scenario.trunk, seed, scenario.family)
    trunk = load_trunk_source(tdir)
    return trunk, _synthetic_branches(trunk, load_tokenizer(tdir), scenario.branches, root / "branches", seq_len)


# -- the setups -------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """One way of serving the scenario: a single call answering every task, or one model call per task."""

    name: str
    layers: int  # transformer layers run to answer every task once (the paper's overhead metric)
    weights_bytes: int
    run: Callable[[], Any] | None = None
    per_task: dict[str, Callable[[], Any]] = field(default_factory=dict)


def _bytes(modules: Sequence[Any]) -> int:
    seen: dict[int, int] = {}
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def composed_call(model: ComposedModel, selected: Sequence[Any], batch: dict[str, Any]) -> Callable[[], Any]:
    """Answer ``selected`` as predict() does: one trunk pass per input signature (a pair task needs its own)."""
    from mtbranch.composition.model import by_signature

    groups = list(by_signature(selected).values())
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    return lambda: [model(ids, mask, types, g) for g in groups]


def _composed_layers(selected: Sequence[Any]) -> int:
    """Layers run: per input signature the trunk to that group's deepest branch, plus every branch's layers."""
    from mtbranch.composition.model import by_signature

    trunk = sum(max(b.manifest.attach_depth for b in g) for g in by_signature(selected).values())
    return trunk + sum(b.manifest.num_layers for b in selected)


def build_setups(trunk: Any, branch_dirs: list[tuple[Path, str]], batch: dict[str, Any], *,
                 device: str, dtype: Any, subset_task: str | None,
                 reference_task: str | None) -> tuple[Any, dict[str, Setup]]:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    from mtbranch.branch.model import load_branch
    from mtbranch.composition.artifact import compose
    from mtbranch.composition.model import ComposedModel
    from mtbranch.trunk.model import load_trunk

    hf_logging.set_verbosity_error()  # "newly initialized heads" is expected for the single-task baseline
    hf_logging.disable_progress_bar()
    composed = compose(trunk, branch_dirs, device=device, dtype=dtype)
    branches = list(composed.branches)
    n_full = trunk.num_layers
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]

    setups: dict[str, Setup] = {}
    setups["composed"] = Setup("composed", _composed_layers(branches), _bytes([composed]),
                               composed_call(composed, branches, batch))

    standalone = {}
    for b in branches:
        assert b.provenance.path is not None  # composed from branch directories
        m = ComposedModel(load_trunk(trunk, b.manifest.attach_depth), [load_branch(b.provenance.path)],
                          composed.tokenizer).to(device=device, dtype=dtype)
        standalone[b.name] = m
    setups["standalone"] = Setup(
        "standalone", sum(b.manifest.attach_depth + b.manifest.num_layers for b in branches),
        _bytes(list(standalone.values())), per_task={k: _call(m, ids, mask, types) for k, m in standalone.items()})

    full = {}
    for b in branches:
        head = b.manifest.head
        auto = AutoModelForTokenClassification if head.type == TOKEN_CLASSIFICATION \
            else AutoModelForSequenceClassification
        try:
            hf = auto.from_pretrained(str(trunk.path), num_labels=head.num_outputs, attn_implementation="sdpa",
                                      use_safetensors=True)
        except ValueError:  # a family without an SDPA implementation (DeBERTa-v2: its own attention)
            hf = auto.from_pretrained(str(trunk.path), num_labels=head.num_outputs, use_safetensors=True)
        full[b.name] = hf.to(device=device, dtype=dtype).eval()
    setups["full"] = Setup("full", n_full * len(branches), _bytes(list(full.values())),
                           per_task={k: _call(m, ids, mask, types, hf=True) for k, m in full.items()})

    if subset_task:
        b = composed.branch(subset_task)
        setups["subset"] = Setup(f"subset ({subset_task})", _composed_layers([b]),
                                 _bytes([composed]), composed_call(composed, [b], batch))
    if reference_task:
        b = composed.branch(reference_task)
        one = standalone[reference_task]
        hf = hf_reference(one, b).to(device=device, dtype=dtype)
        layers = b.manifest.attach_depth + b.manifest.num_layers
        setups["one-branch"] = Setup(f"one-branch ({reference_task})", layers, _bytes([one]),
                                     _call(one, ids, mask, types))
        setups["hf-reference"] = Setup("hf-reference", layers, _bytes([hf]), _call(hf, ids, mask, types, hf=True))
    return composed, setups


def _call(model: Any, ids: Any, mask: Any, types: Any, *, hf: bool = False) -> Callable[[], Any]:
    if hf:
        import inspect

        if "token_type_ids" not in inspect.signature(model.forward).parameters:  # DistilBERT, ModernBERT
            return lambda: model(input_ids=ids, attention_mask=mask).logits
        return lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    return lambda: model(ids, mask, types)


def hf_reference(one: Any, branch: Any) -> Any:
    """transformers' ``*ForSequenceClassification`` with the trunk layers 1..d + the branch's layers, pooler and
    classifier: the model a team would have trained and served for this task alone."""
    from transformers import AutoModelForSequenceClassification

    m = branch.manifest
    if not (branch.sequence_level and m.pooling == "cls" and m.projection and m.tokenizer.input_signature == "single"):
        raise UsageError(f"branch {branch.name!r} is not a [CLS] + pooler sequence head",
                         hint="the transformers reference needs pooling 'cls' with projection")
    cfg = one.trunk.config.__class__(**{**one.trunk.config.to_dict(),
                                         "num_hidden_layers": m.attach_depth + m.num_layers,
                                         "num_labels": m.head.num_outputs})
    cfg._attn_implementation = "sdpa"
    hf = AutoModelForSequenceClassification.from_config(cfg)
    base = getattr(hf, hf.base_model_prefix)
    state = {f"embeddings.{k}": v for k, v in one.trunk.embeddings.state_dict().items()}
    for k, layer in enumerate([*one.trunk.layers, *branch.layers]):
        state.update({f"encoder.layer.{k}.{n}": v for n, v in layer.state_dict().items()})
    state.update({f"pooler.dense.{n}": v for n, v in branch.pooler.dense.state_dict().items()})
    base.load_state_dict(state, strict=True)
    hf.classifier.load_state_dict(branch.head.classifier.state_dict())
    return hf.eval()
