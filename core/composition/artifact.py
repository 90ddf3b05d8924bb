"""Compose branches into one model, write it as a composed artifact, and load it back.

Artifact layout (written atomically)::

    OUT/mtbranch.lock.json          versions, trunk fingerprints, branches, sha256 of every file
    OUT/trunk/                      config.json (num_hidden_layers = D), model.safetensors (layers <= D),
                                    tokenizer files
    OUT/branches/<name>/            manifest.json + its weights file, as exported by the team: only the files
                                    the manifest declares are copied, never the rest of the directory
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import mtbranch
from mtbranch.errors import IntegrityError, MtbranchError, ValidationFailed, os_error
from mtbranch.export.quantize import apply_branch_precisions, quantize_layers
from mtbranch.io.atomic import atomic_directory, exclusive_update
from mtbranch.io.files import check_regular, is_inside, sha256_file
from mtbranch.io.guard import check_output
from mtbranch.io.safetensors_header import read_header
from mtbranch.spec.lock import (  # noqa: F401 (LOCK_VERSION, overhead, read_lock: re-exported from their old home)
    LOCK_NAME,
    LOCK_VERSION,
    ArtifactLock,
    LockBranch,
    LockTrunk,
    lock_overhead,
    overhead,
    read_lock,
)
from mtbranch.spec.manifest import MANIFEST_NAME, BranchManifest, read_manifest
from mtbranch.spec.precision import place_model
from mtbranch.trunk.source import TrunkSource, load_trunk_source
from mtbranch.validation.validator import Report, Validator

if TYPE_CHECKING:
    import torch

    from mtbranch.composition.model import ComposedModel
    from mtbranch.plugins.manager import PluginManager


def compose(trunk: TrunkSource, branch_dirs: Sequence[tuple[Path, str]], *,
            plugin_manager: PluginManager | None = None, device: str = "cpu",
            dtype: str | torch.dtype | None = None, report: Report | None = None) -> ComposedModel:
    """Validate, then build the :class:`ComposedModel`. Refuses when validation finds errors."""
    from mtbranch.branch.model import BranchProvenance, load_branch
    from mtbranch.composition.model import ComposedModel, ComposedProvenance
    from mtbranch.trunk.model import load_trunk
    from mtbranch.trunk.tokenizer import load_tokenizer

    if report is None:
        report = Validator(trunk, plugin_manager=plugin_manager).validate(list(branch_dirs))
    if report.errors:
        raise ValidationFailed(report)
    if not report.branches:
        raise MtbranchError("no branches to compose", hint="install branch plugins or pass --branch DIR")
    from mtbranch.plugins.manager import get_plugin_manager

    pm = get_plugin_manager(plugin_manager)  # the caller's manager, else the process-wide default
    branches = []
    for res in report.branches:
        assert res.manifest is not None  # validation found no error: every manifest was read
        b = load_branch(res.path, pm.head_type(res.manifest.head.type))
        b.provenance = BranchProvenance(res.source or "directory", res.path)
        branches.append(b)
    depth = max(b.manifest.attach_depth for b in branches)
    t = load_trunk(trunk, depth)
    model = ComposedModel(t, branches, load_tokenizer(trunk.path), trunk_num_layers=trunk.num_layers,
                          provenance=ComposedProvenance(trunk))
    return place_model(model, device, dtype)


def _same_place(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(p: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    return Path(os.path.realpath(p)).is_relative_to(os.path.realpath(root))


def composed_inputs(model: ComposedModel, out: str | os.PathLike[str]) -> list[Path]:
    """What writing ``model`` to ``out`` reads: the trunk directory and each branch directory.

    Updating an artifact in place reads its own trunk and kept branches before the swap: those are allowed.
    """
    paths = [Path(_trunk_source(model).path)]
    paths += [p for b in model.branches if (p := b.provenance.path) is not None]
    own = model.provenance.artifact_root
    if own is not None and _same_place(own, out):
        paths = [p for p in paths if not _inside(p, own)]
    return paths


def copy_file(src: Path, dst: Path) -> None:
    """Copy one regular file's bytes (never a FIFO, device or directory; dst gets a umask mode like cp)."""
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fsrc:
        if not stat.S_ISREG(os.fstat(fsrc.fileno()).st_mode):
            raise MtbranchError("not a regular file", path=str(src),
                                hint="a branch's manifest and weights must be plain files")
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "wb") as fdst:
            shutil.copyfileobj(fsrc, fdst, 1 << 20)


def copy_branch_files(src: Path, dst: Path, manifest: BranchManifest) -> None:
    """Copy what the manifest declares (manifest.json and its weights file) from ``src`` to ``dst``.

    The directory is never walked: README files, links and anything else a team keeps next to the artifact
    stay out. Each declared path must resolve inside ``src``; the copied bytes are checked against the manifest
    that was validated (a branch edited while composing is refused).
    """
    for rel in (MANIFEST_NAME, manifest.weights.path):
        if not is_inside(src, rel):
            raise IntegrityError(f"{rel} escapes the branch directory", path=str(src),
                                 hint="run `mtbranch validate --branch DIR` (W008/F001)")
        copy_file((src / rel).resolve(), dst / rel)
    try:
        copied = read_manifest(dst / MANIFEST_NAME)
    except ValueError as exc:
        raise IntegrityError(f"manifest.json changed while composing: {exc}", path=str(src)) from None
    if copied != manifest or sha256_file(dst / manifest.weights.path) != manifest.weights.sha256:
        raise IntegrityError("the branch changed while it was being composed", path=str(src),
                             hint="compose again once the branch directory is no longer being written")


def _trunk_source(model: ComposedModel) -> TrunkSource:
    source = model.provenance.trunk_source
    if source is None:
        raise MtbranchError("this model records no trunk directory, so it cannot be saved or updated",
                            hint="build it with mtbranch.compose(...) or mtbranch.load(...)")
    return source


def save_composed(model: ComposedModel, out: str | os.PathLike[str]) -> ArtifactLock:
    """Write the composed artifact atomically; returns the lock.

    ``out`` may be missing, empty, or an earlier composed artifact, and must not overlap the trunk or branch
    directories (:func:`mtbranch.io.guard.check_output`). Each branch contributes only its manifest.json and
    weights file.
    """
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from mtbranch.branch.model import save_branch
    from mtbranch.trunk.families import truncated_config
    from mtbranch.trunk.model import select_trunk_tensors

    source = _trunk_source(model)
    depth = model.trunk.num_layers
    full_layers = model.trunk_num_layers or source.num_layers
    with atomic_directory(out, kind="composed", inputs=composed_inputs(model, out)) as tmp:
        tdir = tmp / "trunk"
        tdir.mkdir()
        # the trunk file keeps the original tensors byte-for-byte (so fingerprints h_0..h_D still match)
        check_regular(source.weights)
        with safe_open(str(source.weights), framework="pt") as f:
            keep = {rel: f.get_tensor(name) for name, rel in
                    select_trunk_tensors(list(f.keys()), depth, source.structure.model_type).items()}
        # serialised in memory, written by Python: a full disk is an OSError naming the file
        (tdir / "model.safetensors").write_bytes(st_save(keep, metadata={"format": "pt"}))
        cfg = dict(source.config)
        cfg = truncated_config(cfg, depth)  # the family's layer-count key (DistilBERT: n_layers), layer lists
        (tdir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        model.tokenizer.save_pretrained(str(tdir))
        entries = []
        for b in model.branches:
            bdir = tmp / "branches" / b.name
            src = b.provenance.path
            if src is not None and src.is_dir():
                copy_branch_files(src, bdir, b.manifest)
            else:
                save_branch(b, bdir, card=False)  # like a copied branch: manifest and weights only
            entries.append(LockBranch(name=b.name, version=b.manifest.version, source=b.provenance.source,
                                      attach_depth=b.manifest.attach_depth, num_layers=b.manifest.num_layers,
                                      head=b.manifest.head.type, sha256=sha256_file(bdir / b.manifest.weights.path),
                                      # absent: float32 (mtbranch quantize sets int8)
                                      precision="int8" if b.provenance.precision == "int8" else None))
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        lock = ArtifactLock(
            mtbranch_version=mtbranch.__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            trunk=LockTrunk(reference=source.reference, num_layers=full_layers, kept_layers=depth,
                            model_type=source.structure.model_type, fingerprints=source.fingerprints[: depth + 1]),
            branches=entries, overhead=lock_overhead(entries, full_layers), files=files)
        (tmp / LOCK_NAME).write_text(lock.to_json())
    return lock


def verify_artifact(path: str | os.PathLike[str], lock: ArtifactLock | None = None) -> list[str]:
    """Problems found re-checking every file against the lock, and the lock against itself (empty = intact).

    The lock is checked, not trusted: every branch entry must agree with that branch's own manifest (name,
    version, head type, attach depth, layers, sha256, trunk fingerprint) and the recorded trunk fingerprints
    with the trunk file kept in the artifact; duplicate entries, files listed for no branch and branch
    directories the lock does not list are problems too. An unreadable file is a
    :class:`~mtbranch.errors.FileAccessError` (permissions), not an integrity problem.
    """
    root = Path(path)
    lock = lock or read_lock(root)
    problems: list[str] = []
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()} - {LOCK_NAME}
    to_hash = []
    for rel, digest in lock.files.items():
        p = root / rel
        if not is_inside(root, rel):
            problems.append(f"{rel}: path escapes the artifact directory")
        elif not p.is_file():
            problems.append(f"{rel}: missing")
        else:
            to_hash.append((rel, p, digest))

    def digest_of(p: Path) -> str:
        try:
            return sha256_file(p)
        except OSError as exc:  # permission denied, I/O error: say so, it is not tampering
            raise os_error(exc, "reading the composed artifact", str(p)) from None

    # hashlib releases the GIL on large reads: hash files in parallel, biggest first (load time is mostly this)
    to_hash.sort(key=lambda x: -x[1].stat().st_size)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        digests = list(pool.map(lambda x: digest_of(x[1]), to_hash))
    bad = {rel for (rel, _, want), got in zip(to_hash, digests, strict=True) if got != want}
    problems += [f"{rel}: sha256 differs from the lock file" for rel, _, _ in to_hash if rel in bad]
    for rel in sorted(present - set(lock.files)):
        problems.append(f"{rel}: not listed in the lock file")
    unsound = bad | {rel for rel in lock.files if rel not in {r for r, _, _ in to_hash}}
    return problems + _lock_disagreements(root, lock, unsound)


def _lock_disagreements(root: Path, lock: ArtifactLock, unsound: set[str]) -> list[str]:
    """Lock entries that disagree with the files they describe (files already found broken are skipped)."""
    problems = lock.inconsistencies() + _listing_problems(root, lock)
    checker = Validator()
    for e in lock.branches:
        problems += _branch_problems(root, lock, e, unsound, checker)
    if not any(rel.startswith("trunk/") for rel in unsound):
        problems += _trunk_problems(root, lock)
    return problems


def _listing_problems(root: Path, lock: ArtifactLock) -> list[str]:
    """Files the lock lists for no branch, and branch directories it does not list."""
    names = lock.names
    problems = []
    for rel in sorted(lock.files):
        parts = Path(rel).parts
        if not (parts[:1] == ("trunk",) or (parts[:1] == ("branches",) and len(parts) > 2 and parts[1] in names)):
            problems.append(f"{rel}: listed in the lock file for no branch")
    bdir = root / "branches"
    if bdir.is_dir():
        problems += [f"branches/{d.name}: present but not listed in the lock file"
                     for d in sorted(bdir.iterdir()) if d.name not in names]
    return problems


def _branch_problems(root: Path, lock: ArtifactLock, e: LockBranch, unsound: set[str], checker: Validator
                     ) -> list[str]:
    """One branch entry against the branch's own manifest, weights header and the lock's trunk fingerprints."""
    files, fps, kept, name = lock.files, lock.trunk.fingerprints, lock.trunk.kept_layers, e.name
    mrel = f"branches/{name}/{MANIFEST_NAME}"
    if mrel not in files:  # every branch loaded must be covered by the hashes above
        return [f"branches/{name}: branch listed in the lock but its files are not"]
    if mrel in unsound:
        return []
    try:
        m = read_manifest(root / mrel)
    except (OSError, ValueError) as exc:
        return [f"{mrel}: unreadable manifest ({exc})"]
    problems = []
    wrel = f"branches/{name}/{m.weights.path}"
    if wrel not in files:
        problems.append(f"{wrel}: the branch's weights file is not listed in the lock file")
    elif files[wrel] != e.sha256 or e.sha256 != m.weights.sha256:
        problems.append(f"{wrel}: sha256 in the branch entry, the file list and the manifest disagree")
    recorded = e.model_dump(include={"name", "version", "head", "attach_depth", "num_layers"})
    want = {"name": m.name, "version": m.version, "head": m.head.type, "attach_depth": m.attach_depth,
            "num_layers": m.num_layers}
    problems += [f"branches[{name}].{key}: lock says {recorded[key]!r}, the manifest {value!r}"
                 for key, value in want.items() if recorded[key] != value]
    if wrel in files and wrel not in unsound:  # the header check validate runs: names and shapes
        problems += [f"{wrel}: {f.code} {f.message}" for f in checker.header_findings(m, root / wrel, root / mrel)
                     if f.severity == "error"]
    if m.attach_depth > kept:
        problems.append(f"branches[{name}]: attach_depth {m.attach_depth} is above the {kept} kept layers")
    elif m.attach_depth < len(fps) and fps[m.attach_depth] != m.trunk.fingerprint:
        problems.append(f"branches[{name}]: trunk fingerprint at depth {m.attach_depth} disagrees with "
                        "the lock's trunk fingerprints")
    return problems


def _trunk_problems(root: Path, lock: ArtifactLock) -> list[str]:
    """The lock's trunk record against the trunk kept in the artifact (its config and fingerprint chain)."""
    t = lock.trunk
    try:
        source = load_trunk_source(root / "trunk")
        chain = source.fingerprints
    except (MtbranchError, OSError, ValueError) as exc:
        return [f"trunk: cannot compute its fingerprints ({exc})"]
    problems = []
    if source.structure.model_type != t.model_type:
        problems.append(f"trunk.model_type: lock says {t.model_type!r}, trunk/config.json "
                        f"{source.structure.model_type!r}")
    if source.num_layers != t.kept_layers:
        problems.append(f"trunk/config.json: {source.num_layers} layers, the lock says {t.kept_layers} kept")
    elif chain[: t.kept_layers + 1] != t.fingerprints:
        problems.append("trunk: the trunk's fingerprints differ from the lock's trunk.fingerprints")
    return problems


def load(path: str | os.PathLike[str], *, verify: bool = True, device: str = "cpu",
         dtype: str | torch.dtype | None = None, tasks: Sequence[str] | None = None,
         quantize: str | None = None, backend: str | None = None) -> ComposedModel:
    """Load a composed artifact. Hashes are checked against the lock unless ``verify=False``.

    ``backend`` and ``dtype`` default to ``auto`` (``$MTBRANCH_BACKEND`` / ``$MTBRANCH_DTYPE`` when set): the
    fastest exact-enough engine measured on this machine, per batch size: torch float32, torch bfloat16 (CPUs
    with native bf16) or ONNX Runtime float32 (mtbranch.backends.auto; what was picked and why:
    ``model.backend_reason``). The float32 reference, equal to transformers' forward: ``backend="torch",
    dtype="float32"``. ``dtype`` also takes ``bfloat16`` and ``float16`` (GPU only); ``quantize="int8"``: int8
    dynamic quantization of the transformer layers (torch, CPU). Speed and metric change of each:
    docs/benchmarks.md.
    """
    root = Path(path)
    if not root.is_dir():
        raise MtbranchError("composed artifact directory does not exist", path=str(root))
    lock = read_lock(root)
    tasks = _known_tasks(lock, tasks, root)
    checking = None
    if verify:
        # hash the files while the model is built from their memory-mapped pages (hashlib releases the GIL): load
        # then costs about one read of the files; nothing is returned before every hash matches
        pool = ThreadPoolExecutor(max_workers=1)
        checking = pool.submit(verify_artifact, root, lock)
        pool.shutdown(wait=False)
    try:
        model = _build(root, lock, tasks)
    except Exception:
        if checking is not None:  # a tampered file is reported as such, not as whatever it broke while building
            refuse_if_tampered(root, checking.result())
        raise
    if checking is not None:
        refuse_if_tampered(root, checking.result())
    from mtbranch.backends.auto import place

    precisions = {e.name: e.precision or "float32" for e in lock.branches}
    if quantize is None and "int8" in precisions.values():
        # branches `mtbranch quantize` kept int8 run dynamic int8 over float32 CPU weights in torch: what auto means
        backend = "torch" if backend in (None, "auto") else backend
        dtype = "float32" if dtype in (None, "auto") else dtype
    model = place(model, device=device, dtype=dtype, backend=backend, quantize=quantize)
    if quantize is not None:
        quantize_layers(model, quantize)
    else:  # the branches `mtbranch quantize` kept int8 (their dev metric allowed it); the trunk stays float32
        apply_branch_precisions(model, precisions)
    return model


def _known_tasks(lock: ArtifactLock, tasks: Sequence[str] | None, root: Path) -> list[str] | None:
    """``load(tasks=...)``: names the artifact has (``tasks=["nope"]`` used to load zero branches silently)."""
    from mtbranch.composition.model import _check_tasks

    names = _check_tasks(tasks)
    if names is None:
        return None
    have = lock.names
    unknown = [t for t in names if t not in have]
    if unknown:
        raise MtbranchError(f"unknown task(s) {', '.join(map(repr, unknown))}", path=str(root),
                            hint=f"tasks in this artifact: {', '.join(have) or 'none'}")
    return names


def refuse_if_tampered(root: Path, problems: list[str]) -> None:
    if problems:
        raise IntegrityError("composed artifact does not match its lock file:\n  " + "\n  ".join(problems),
                             path=str(root), hint="compose it again, or restore the original files")


def _build(root: Path, lock: ArtifactLock, tasks: Sequence[str] | None) -> ComposedModel:
    from mtbranch.branch.model import BranchProvenance, load_branch
    from mtbranch.composition.model import ComposedModel, ComposedProvenance
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.trunk.model import load_trunk
    from mtbranch.trunk.tokenizer import load_tokenizer

    source = load_trunk_source(root / "trunk", reference=lock.trunk.reference)
    read_header(source.weights)  # a clear HeaderError for a truncated/corrupt trunk, also when verify=False
    pm = get_plugin_manager()
    branches = []
    for e in lock.branches:
        if tasks is not None and e.name not in tasks:
            continue
        bdir = root / "branches" / e.name
        b = load_branch(bdir, pm.head_type(e.head), verify=False)
        b.provenance = BranchProvenance(e.source or "directory", bdir, e.precision or "float32")
        branches.append(b)
    depth = max((b.manifest.attach_depth for b in branches), default=0)
    trunk = load_trunk(source, depth)
    model = ComposedModel(trunk, branches, load_tokenizer(source.path),
                          trunk_num_layers=lock.trunk.num_layers, lock=lock,
                          provenance=ComposedProvenance(source, root))
    return model


def update_composed(path: str | os.PathLike[str], *, put: Sequence[str | os.PathLike[str]] = (),
                    remove: Sequence[str] = ()) -> ArtifactLock:
    """Add/replace (``put``) or remove branches in a composed artifact without touching the others.

    New branches are validated against the artifact's own (truncated) trunk, whose fingerprints equal the
    original trunk's up to the kept depth; a branch deeper than that needs a fresh ``compose``.
    """
    from mtbranch.branch.model import BranchProvenance, load_branch
    from mtbranch.plugins.manager import get_plugin_manager

    # the artifact must be one already (read_lock in load), and no --put directory may lie inside it
    path = check_output(path, "composed", inputs=list(put))  # ~ expanded, as for every output
    # read, modify and write under one lock: a concurrent update waits, then reads this one's result
    with exclusive_update(path):
        model = load(path, backend="torch", dtype="float32")
        pm = get_plugin_manager()
        for name in remove:
            model.remove_branch(name)
        if put:
            report = Validator(_trunk_source(model), plugin_manager=pm).validate([(Path(p), "directory") for p in put])
            if report.errors:
                raise ValidationFailed(report)
            for res in report.branches:
                assert res.manifest is not None  # no error: every manifest was read
                b = load_branch(res.path, pm.head_type(res.manifest.head.type))
                b.provenance = BranchProvenance("directory", res.path)
                model.put_branch(b)
        return save_composed(model, path)
