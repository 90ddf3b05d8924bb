"""A branch as a torch module, and its artifact directory (manifest.json + branch.safetensors).

A branch takes the trunk's hidden states at its attach depth, runs ``num_layers`` layers of the trunk's
own layer type (and the family's final module, e.g. ModernBERT's final norm), pools (sequence heads),
optionally projects (the family's pooler: BERT's dense+tanh, ModernBERT's prediction head...) and applies
its head. Weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

from mtbranch.errors import IntegrityError, MtbranchError
from mtbranch.heads.registry import HeadType, typed_spec
from mtbranch.io.atomic import atomic_directory
from mtbranch.io.files import check_regular, is_inside, sha256_file
from mtbranch.io.safetensors_header import read_header
from mtbranch.spec.dtypes import torch_dtype
from mtbranch.spec.manifest import MANIFEST_NAME, BranchManifest, read_manifest
from mtbranch.spec.tensor_layout import head_input_size
from mtbranch.trunk.families.base import Projection  # noqa: F401 (re-exported: BERT's pooler)
from mtbranch.trunk.model import family_of


class AttentionPooling(nn.Module):
    """Multi-head attention pooling with a learned query (papers/003)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        q = self.query.expand(hidden.shape[0], -1, -1)
        pad = None if attention_mask is None else attention_mask == 0
        out, _ = self.attn(q, hidden, hidden, key_padding_mask=pad, need_weights=False)
        return out[:, 0]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    raise ValueError(how)


@dataclass(frozen=True)
class BranchProvenance:
    """Where a loaded branch came from, recorded by compose, load and update. A branch built or loaded in Python
    has the default: no directory, so a composed artifact saves its weights rather than copying its files."""

    source: str = "directory"  # how it was found: "directory", a branch plugin's name, "hf:ORG/NAME@REV"
    path: Path | None = None  # the directory its manifest.json and weights were read from
    precision: str = "float32"  # the lock's branches[].precision: "int8" where `mtbranch quantize` kept it


class BranchModule(nn.Module):
    """``layers`` (the trunk family's own, built with their index in the trunk), the family's ``context``
    (a frozen copy of what every layer reads, e.g. DeBERTa's relative embeddings) and ``final`` (what follows
    the last layer, e.g. ModernBERT's final norm), pooling, ``pooler`` (the family's projection) and ``head``."""

    provenance: BranchProvenance = BranchProvenance()

    def __init__(self, manifest: BranchManifest, head_type: HeadType) -> None:
        super().__init__()
        self.manifest = manifest
        self.head_type = head_type
        s = manifest.trunk.structure
        self.family = family_of(s)
        d = manifest.attach_depth
        self.config = self.family.hf_config(s, d + max(manifest.num_layers, 1))
        self.layers = nn.ModuleList(self.family.build_layer(self.config, d + i) for i in range(manifest.num_layers))
        context = self.family.build_context(self.config) if manifest.num_layers else None
        if context is not None:
            self.context = context.requires_grad_(False)
        final = self.family.build_final(self.config)
        if final is not None:
            self.final = final
        self.sequence_level = head_type.sequence_level
        self.pooling_kind = manifest.pooling
        if self.sequence_level and manifest.pooling == "attention":
            self.pooling = AttentionPooling(s.hidden_size, s.num_attention_heads)
        if manifest.projection and (self.sequence_level or self.family.token_projection):
            self.pooler = self.family.build_projection(self.config)
        self.head_spec = typed_spec(head_type, manifest.head)  # a plugin head: its own spec model
        self.shared_pair = manifest.pair_mode == "shared"
        if self.shared_pair and not self.sequence_level:
            raise MtbranchError(f"branch {manifest.name!r}: pair_mode 'shared' needs a sequence-level head, not "
                                f"{manifest.head.type!r}", hint="use pair_mode 'joint' for this head type")
        self.head = head_type.build(self.head_spec, head_input_size(manifest))

    @property
    def name(self) -> str:
        return self.manifest.name

    def encode(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
               mask4d: Any = None) -> torch.Tensor:
        """The branch's own layers (then the family's final module) over the trunk's hidden states at its
        attach depth. ``mask4d``: the trunk's per-forward context (computed here from the branch's own copy
        when not given)."""
        if len(self.layers) and mask4d is None:
            mask4d = self.family.prepare(self.config, getattr(self, "context", None), hidden, attention_mask)
        d = self.manifest.attach_depth
        for i, layer in enumerate(self.layers):
            hidden = self.family.run_layer(layer, d + i, hidden, mask4d)
        if hasattr(self, "final"):
            hidden = self.final(hidden)
        return hidden

    def head_input(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if not self.sequence_level:
            return self.pooler(hidden) if hasattr(self, "pooler") else hidden
        if self.pooling_kind == "attention":
            x = self.pooling(hidden, attention_mask)
        else:
            x = pool(hidden, attention_mask, self.pooling_kind)
        return self.pooler(x) if hasattr(self, "pooler") else x

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mask4d: Any = None) -> torch.Tensor:
        """The head's outputs; a ``shared`` pair branch returns the pooled vector of each text instead (what
        :meth:`combine` reads: the two texts of a pair run apart, in the single-text pass)."""
        x = self.head_input(self.encode(hidden, attention_mask, mask4d), attention_mask)
        return x if self.shared_pair else self.head(x)

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A ``shared`` pair branch's head over its two texts' pooled vectors: [u, v, |u-v|, u*v]."""
        return self.head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))

    def pair_forward(self, hidden_a: torch.Tensor, mask_a: torch.Tensor | None, hidden_b: torch.Tensor,
                     mask_b: torch.Tensor | None) -> torch.Tensor:
        """A ``shared`` pair branch over both texts' hidden states at its depth (training reads this)."""
        return self.combine(self(hidden_a, mask_a), self(hidden_b, mask_b))


def save_branch(module: BranchModule, out_dir: str | os.PathLike[str], *,
                dtype: str | None = None, extra_files: dict[str, bytes] | None = None,
                card: bool = True) -> BranchManifest:
    """Write the artifact atomically; returns the manifest with weights sha256/params filled in.

    ``card``: also write the model card (README.md) generated from the final manifest: every branch that train,
    build, distill and import-hf export carries one (a composed artifact's copies do not: ``card=False``)."""
    manifest = module.manifest
    dtype = dtype or manifest.weights.dtype
    state = {k: v.detach().to(torch_dtype(dtype)).contiguous().cpu() for k, v in module.state_dict().items()}
    data = st_save(state, metadata={"format": "pt", "mtbranch.branch.model": manifest.name})
    weights = manifest.weights.model_copy(update={
        "sha256": hashlib.sha256(data).hexdigest(), "dtype": dtype,
        "num_parameters": sum(v.numel() for v in state.values()),
    })
    manifest = manifest.model_copy(update={"weights": weights})
    with atomic_directory(out_dir, kind="branch") as tmp:
        (tmp / weights.path).write_bytes(data)
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        if card:
            from mtbranch.branch.card import CARD_NAME, card_text

            (tmp / CARD_NAME).write_text(card_text(manifest), encoding="utf-8")
        for name, blob in (extra_files or {}).items():
            (tmp / name).write_bytes(blob)
    module.manifest = manifest
    return manifest


def resolve_inside(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, refusing paths that escape ``root`` (../, absolute paths, symlinks)."""
    if not is_inside(root, relative):
        raise MtbranchError(f"{what} path {relative!r} escapes the artifact directory",
                            path=str(root), hint="keep files inside the artifact directory")
    return (root / relative).resolve()


def load_branch(path: str | os.PathLike[str], head_type: HeadType | None = None, *,
                verify: bool = True, expected_sha256: str | None = None) -> BranchModule:
    root = Path(path)
    try:
        manifest = read_manifest(root / MANIFEST_NAME)
    except OSError as exc:
        raise MtbranchError(f"cannot read manifest.json: {exc.strerror or exc}", path=str(root),
                            hint="a branch artifact is a directory with manifest.json and its weights") from None
    except ValueError as exc:  # JSON, schema version or schema (pydantic) errors
        raise MtbranchError(f"manifest.json is invalid: {exc}", path=str(root / MANIFEST_NAME),
                            hint=f"`mtbranch validate --branch {root}` lists every finding") from None
    if head_type is None:
        from mtbranch.plugins.manager import get_plugin_manager

        head_type = get_plugin_manager().head_type(manifest.head.type)
    weights = resolve_inside(root, manifest.weights.path, "weights")
    if verify:
        digest = sha256_file(weights)
        for want in {w for w in (manifest.weights.sha256, expected_sha256) if w is not None}:
            if digest != want:
                raise IntegrityError(f"sha256 {digest[:16]}... does not match the recorded {want[:16]}...",
                                     path=str(weights), hint="the file was modified or corrupted; re-export it")
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every tensor comes from the file: skip the random init (most of the build time)
        module = BranchModule(manifest, head_type)
    read_header(weights)  # a clear HeaderError for truncated/corrupt files, also when verify=False
    try:
        check_regular(weights)
        with safe_open(str(weights), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        # assign: float32 tensors stay the file's memory-mapped pages (copy-on-write), not a second copy
        module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:  # file checks; missing/misshapen tensors
        raise MtbranchError(f"weights do not load into the declared architecture: {exc}", path=str(weights),
                            hint=f"`mtbranch validate --branch {root}` names the tensor and the fix") from None
    return module.eval()

