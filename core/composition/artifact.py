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
from typing import Any

import mtbranch
from mtbranch.errors import IntegrityError, MtbranchError, ValidationFailed, os_error
from mtbranch.export.quantize import BRANCH_PRECISIONS, apply_branch_precisions, quantize_layers
from mtbranch.io.atomic import atomic_directory, exclusive_update
from mtbranch.io.files import (
    JsonFileError,
    NotRegularFileError,
    check_regular,
    is_inside,
    read_json_object,
    sha256_file,
)
from mtbranch.io.guard import check_output
from mtbranch.io.safetensors_header import read_header
from mtbranch.spec.manifest import MANIFEST_NAME, NAME_RE, BranchManifest, read_manifest
from mtbranch.spec.precision import place_model
from mtbranch.trunk.source import TrunkSource, load_trunk_source
from mtbranch.validation.validator import Report, Validator

LOCK_NAME = "mtbranch.lock.json"
LOCK_VERSION = 1


def compose(trunk: TrunkSource, branch_dirs: Sequence[tuple[Path, str]], *,
            plugin_manager: Any | None = None, device: str = "cpu", dtype: Any = None,
            report: Report | None = None) -> Any:
    """Validate, then build the :class:`ComposedModel`. Refuses when validation finds errors."""
    from mtbranch.branch.model import load_branch
    from mtbranch.composition.model import ComposedModel
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
        b = load_branch(res.path, pm.head_type(res.manifest.head.type))
        b.source = res.source  # type: ignore[attr-defined]
        b.artifact_path = res.path  # type: ignore[attr-defined]
        branches.append(b)
    depth = max(b.manifest.attach_depth for b in branches)
    t = load_trunk(trunk, depth)
    model = ComposedModel(t, branches, load_tokenizer(trunk.path), trunk_num_layers=trunk.num_layers,
                          lock={"trunk": {"reference": trunk.reference,
                                          "fingerprints": trunk.fingerprints[: depth + 1]}})
    model.trunk_source = trunk  # type: ignore[attr-defined]
    return place_model(model, device, dtype)


def overhead(depth: int, branch_layers: Sequence[int], full_layers: int) -> dict[str, Any]:
    """The paper's overhead metric: transformer layers composed vs one full model per task."""
    task = sum(branch_layers)
    total = depth + task
    single = full_layers * len(branch_layers)
    return {"shared_layers": depth, "task_layers": task, "total_layers": total,
            "single_task_layers": single, "ratio": total / single if single else 0.0,
            "text": f"{depth} + {task} = {total} of {single}, {100 * total / single:.1f}%" if single else "-"}


def lock_overhead(entries: Sequence[dict[str, Any]], full_layers: int) -> dict[str, Any]:
    """The overhead of a lock's branches: shared layers are the deepest attach depth (the trunk layers that run),
    not the kept layers (``update --remove`` may leave more kept than any branch reads)."""
    depth = max((int(e["attach_depth"]) for e in entries), default=0)
    return overhead(depth, [int(e["num_layers"]) for e in entries], full_layers)


def _same_place(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(p: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    return Path(os.path.realpath(p)).is_relative_to(os.path.realpath(root))


def composed_inputs(model: Any, out: str | os.PathLike[str]) -> list[Path]:
    """What writing ``model`` to ``out`` reads: the trunk directory and each branch directory.

    Updating an artifact in place reads its own trunk and kept branches before the swap: those are allowed.
    """
    paths = [Path(model.trunk_source.path)]
    paths += [Path(p) for b in model.branches if (p := getattr(b, "artifact_path", None)) is not None]
    own = getattr(model, "artifact_root", None)
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


def save_composed(model: Any, out: str | os.PathLike[str]) -> dict[str, Any]:
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

    source: TrunkSource = model.trunk_source
    depth = model.trunk.num_layers
    full_layers = int(getattr(model, "trunk_num_layers", None) or source.num_layers)
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
            src = getattr(b, "artifact_path", None)
            if src is not None and Path(src).is_dir():
                copy_branch_files(Path(src), bdir, b.manifest)
            else:
                save_branch(b, bdir, card=False)  # like a copied branch: manifest and weights only
            entries.append({"name": b.name, "version": b.manifest.version,
                            "source": getattr(b, "source", None) or "directory",
                            "attach_depth": b.manifest.attach_depth, "num_layers": b.manifest.num_layers,
                            "head": b.manifest.head.type,
                            "sha256": sha256_file(bdir / b.manifest.weights.path)})
            if getattr(b, "precision", "float32") != "float32":  # absent: float32 (mtbranch quantize sets it)
                entries[-1]["precision"] = b.precision
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        lock = {
            "lock_version": LOCK_VERSION,
            "mtbranch_version": mtbranch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # num_layers: the full trunk's (kept across `update`, whose source is the truncated copy)
            "trunk": {"reference": source.reference, "num_layers": full_layers, "kept_layers": depth,
                      "model_type": source.structure.model_type,
                      "fingerprints": source.fingerprints[: depth + 1]},
            "branches": entries,
            "overhead": lock_overhead(entries, full_layers),
            "files": files,
        }
        (tmp / LOCK_NAME).write_text(json.dumps(lock, indent=2) + "\n")
    return lock


def read_lock(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The lock file, with the fields loading relies on checked (a hand-edited lock is an IntegrityError)."""
    lp = Path(path) / LOCK_NAME
    try:
        lock = read_json_object(lp)
    except FileNotFoundError:
        raise MtbranchError("not a composed artifact: no mtbranch.lock.json", path=str(path),
                            hint="create one with `mtbranch compose -o DIR`") from None
    except (PermissionError, NotRegularFileError) as exc:  # the environment, not the file's content
        raise os_error(exc, "reading the lock file", str(lp)) from None
    except (OSError, JsonFileError) as exc:
        raise IntegrityError(f"lock file is unusable: {exc}", path=str(lp),
                             hint="the lock file was edited or corrupted; compose again") from None
    problem = _lock_problem(lock)
    if problem:
        raise IntegrityError(f"lock file field {problem}", path=str(lp),
                             hint="the lock file was edited or corrupted; compose again")
    return lock


_LOCK_TRUNK_FIELDS = {"reference": str, "num_layers": int, "kept_layers": int, "model_type": str}
_LOCK_BRANCH_FIELDS = {"head": str, "version": str, "attach_depth": int, "num_layers": int}


def _lock_problem(lock: dict[str, Any]) -> str | None:
    files, branches, trunk = lock.get("files"), lock.get("branches"), lock.get("trunk")
    version = lock.get("lock_version")
    if isinstance(version, bool) or version != LOCK_VERSION:
        return f"lock_version {version!r}: this mtbranch reads version {LOCK_VERSION} (a newer one may read others)"
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return "'files' is not an object mapping paths to sha256 strings"
    if not isinstance(trunk, dict):
        return "'trunk' is not an object"
    for key, kind in _LOCK_TRUNK_FIELDS.items():
        if not isinstance(trunk.get(key), kind):
            return f"trunk.{key} is not a {kind.__name__}"
    fps = trunk.get("fingerprints")
    if not isinstance(fps, list) or not all(isinstance(x, str) for x in fps):
        return "trunk.fingerprints is not a list of strings"
    if not isinstance(branches, list):
        return "'branches' is not a list"
    for i, e in enumerate(branches):
        if not isinstance(e, dict):
            return f"branches[{i}] is not an object"
        # the name becomes a directory under branches/: it must be a plain task name, never a path
        if not isinstance(e.get("name"), str) or not NAME_RE.match(e["name"]):
            return f"branches[{i}].name {e.get('name')!r} is not a task name"
        for key, kind in _LOCK_BRANCH_FIELDS.items():
            if not isinstance(e.get(key), kind):
                return f"branches[{i}].{key} is not a {kind.__name__}"
        if not isinstance(e.get("sha256"), str):
            return f"branches[{i}].sha256 is not a str"
        if e.get("precision", "float32") not in BRANCH_PRECISIONS:
            return f"branches[{i}].precision {e.get('precision')!r} is not one of {', '.join(BRANCH_PRECISIONS)}"
    if not isinstance(lock.get("overhead"), dict) or not isinstance(lock["overhead"].get("text"), str):
        return "'overhead' is not an object with a 'text'"
    return None


def verify_artifact(path: str | os.PathLike[str], lock: dict[str, Any] | None = None) -> list[str]:
    """Problems found re-checking every file against the lock, and the lock against itself (empty = intact).

    The lock is checked, not trusted: every branch entry must agree with that branch's own manifest (name,
    version, head type, attach depth, layers, sha256, trunk fingerprint) and the recorded trunk fingerprints
    with the trunk file kept in the artifact; duplicate entries, files listed for no branch and branch
    directories the lock does not list are problems too. An unreadable file is a
    :class:`~mtbranch.errors.FileAccessError` (permissions), not an integrity problem.
    """
    root = Path(path)
    lock = lock or read_lock(root)
    problems = []
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()} - {LOCK_NAME}
    to_hash = []
    for rel, digest in lock["files"].items():
        p = root / rel
        if not isinstance(rel, str) or not is_inside(root, rel):
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
    for rel in sorted(present - set(lock["files"])):
        problems.append(f"{rel}: not listed in the lock file")
    unsound = bad | {rel for rel in lock["files"] if rel not in {r for r, _, _ in to_hash}}
    return problems + _lock_disagreements(root, lock, unsound)


def _lock_disagreements(root: Path, lock: dict[str, Any], unsound: set[str]) -> list[str]:
    """Lock entries that disagree with the files they describe (files already found broken are skipped)."""
    problems = []
    checker = Validator()
    files = lock["files"]
    fps = lock["trunk"]["fingerprints"]
    kept = lock["trunk"]["kept_layers"]
    names = [e["name"] for e in lock["branches"]]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"branches: {name!r} is listed {names.count(name)} times")
    if len(fps) != kept + 1:
        problems.append(f"trunk: {len(fps)} fingerprints recorded for {kept} kept layers (want {kept + 1})")
    if kept > lock["trunk"]["num_layers"]:
        problems.append(f"trunk: kept_layers {kept} exceeds the trunk's num_layers {lock['trunk']['num_layers']}")
    want = lock_overhead(lock["branches"], lock["trunk"]["num_layers"])
    if lock["overhead"] != want:
        problems.append(f"overhead: lock says {lock['overhead'].get('text')!r}, its branches make {want['text']!r}")
    for rel in sorted(files):
        parts = Path(rel).parts
        if not (parts[:1] == ("trunk",) or (parts[:1] == ("branches",) and len(parts) > 2 and parts[1] in names)):
            problems.append(f"{rel}: listed in the lock file for no branch")
    bdir = root / "branches"
    if bdir.is_dir():
        for d in sorted(bdir.iterdir()):
            if d.name not in names:
                problems.append(f"branches/{d.name}: present but not listed in the lock file")
    for e in lock["branches"]:
        name = e["name"]
        mrel = f"branches/{name}/{MANIFEST_NAME}"
        if mrel not in files:  # every branch loaded must be covered by the hashes above
            problems.append(f"branches/{name}: branch listed in the lock but its files are not")
            continue
        if mrel in unsound:
            continue
        try:
            m = read_manifest(root / mrel)
        except (OSError, ValueError) as exc:
            problems.append(f"{mrel}: unreadable manifest ({exc})")
            continue
        wrel = f"branches/{name}/{m.weights.path}"
        if wrel not in files:
            problems.append(f"{wrel}: the branch's weights file is not listed in the lock file")
        elif files[wrel] != e["sha256"] or e["sha256"] != m.weights.sha256:
            problems.append(f"{wrel}: sha256 in the branch entry, the file list and the manifest disagree")
        want = {"name": m.name, "version": m.version, "head": m.head.type, "attach_depth": m.attach_depth,
                "num_layers": m.num_layers}
        for key, value in want.items():
            if e.get(key) != value:
                problems.append(f"branches[{name}].{key}: lock says {e.get(key)!r}, the manifest {value!r}")
        if wrel in files and wrel not in unsound:  # the header check validate runs: names and shapes
            problems += [f"{wrel}: {f.code} {f.message}" for f in checker.header_findings(m, root / wrel, root / mrel)
                         if f.severity == "error"]
        if m.attach_depth > kept:
            problems.append(f"branches[{name}]: attach_depth {m.attach_depth} is above the {kept} kept layers")
        elif m.attach_depth < len(fps) and fps[m.attach_depth] != m.trunk.fingerprint:
            problems.append(f"branches[{name}]: trunk fingerprint at depth {m.attach_depth} disagrees with "
                            "the lock's trunk fingerprints")
    if not any(rel.startswith("trunk/") for rel in unsound):
        try:
            source = load_trunk_source(root / "trunk")
            chain = source.fingerprints
        except (MtbranchError, OSError, ValueError) as exc:
            problems.append(f"trunk: cannot compute its fingerprints ({exc})")
        else:
            if source.structure.model_type != lock["trunk"]["model_type"]:
                problems.append(f"trunk.model_type: lock says {lock['trunk']['model_type']!r}, trunk/config.json "
                                f"{source.structure.model_type!r}")
            if source.num_layers != kept:
                problems.append(f"trunk/config.json: {source.num_layers} layers, the lock says {kept} kept")
            elif chain[: kept + 1] != fps:
                problems.append("trunk: the trunk's fingerprints differ from the lock's trunk.fingerprints")
    return problems


def load(path: str | os.PathLike[str], *, verify: bool = True, device: str = "cpu", dtype: Any = None,
         tasks: Sequence[str] | None = None, quantize: str | None = None) -> Any:
    """Load a composed artifact. Hashes are checked against the lock unless ``verify=False``.

    ``dtype``: ``float32`` (default: equals transformers' forward), ``bfloat16``, ``float16`` (GPU only) or
    ``auto`` (bf16 where the hardware multiplies it natively, else float32; mtbranch.spec.precision); the choice
    is kept as ``model.compute_dtype``. ``quantize="int8"``: the CPU fast path, int8 dynamic quantization of the
    transformer layers (mtbranch.export.quantize). Speed and metric change of each: docs/benchmarks.md.
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
    model = place_model(model, device, dtype, quantize=quantize)
    if quantize is not None:
        quantize_layers(model, quantize)
    else:  # the branches `mtbranch quantize` kept int8 (their dev metric allowed it); the trunk stays float32
        apply_branch_precisions(model, {e["name"]: e.get("precision", "float32") for e in lock["branches"]})
    return model


def _known_tasks(lock: dict[str, Any], tasks: Sequence[str] | None, root: Path) -> list[str] | None:
    """``load(tasks=...)``: names the artifact has (``tasks=["nope"]`` used to load zero branches silently)."""
    from mtbranch.composition.model import _check_tasks

    names = _check_tasks(tasks)
    if names is None:
        return None
    have = [str(e.get("name")) for e in lock["branches"]]
    unknown = [t for t in names if t not in have]
    if unknown:
        raise MtbranchError(f"unknown task(s) {', '.join(map(repr, unknown))}", path=str(root),
                            hint=f"tasks in this artifact: {', '.join(have) or 'none'}")
    return names


def refuse_if_tampered(root: Path, problems: list[str]) -> None:
    if problems:
        raise IntegrityError("composed artifact does not match its lock file:\n  " + "\n  ".join(problems),
                             path=str(root), hint="compose it again, or restore the original files")


def _build(root: Path, lock: dict[str, Any], tasks: Sequence[str] | None) -> Any:
    from mtbranch.branch.model import load_branch
    from mtbranch.composition.model import ComposedModel
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.trunk.model import load_trunk
    from mtbranch.trunk.tokenizer import load_tokenizer

    source = load_trunk_source(root / "trunk", reference=lock["trunk"].get("reference"))
    read_header(source.weights)  # a clear HeaderError for a truncated/corrupt trunk, also when verify=False
    pm = get_plugin_manager()
    branches = []
    for e in lock["branches"]:
        if tasks is not None and e["name"] not in tasks:
            continue
        bdir = root / "branches" / e["name"]
        b = load_branch(bdir, pm.head_type(e["head"]), verify=False)
        b.source, b.artifact_path = e.get("source"), bdir  # type: ignore[attr-defined]
        b.precision = e.get("precision", "float32")  # type: ignore[attr-defined]
        branches.append(b)
    depth = max((b.manifest.attach_depth for b in branches), default=0)
    trunk = load_trunk(source, depth)
    model = ComposedModel(trunk, branches, load_tokenizer(source.path),
                          trunk_num_layers=int(lock["trunk"].get("num_layers", source.num_layers)), lock=lock)
    model.trunk_source = source  # type: ignore[attr-defined]
    model.artifact_root = root  # type: ignore[attr-defined]
    return model


def update_composed(path: str | os.PathLike[str], *, put: Sequence[str | os.PathLike[str]] = (),
                    remove: Sequence[str] = ()) -> dict[str, Any]:
    """Add/replace (``put``) or remove branches in a composed artifact without touching the others.

    New branches are validated against the artifact's own (truncated) trunk, whose fingerprints equal the
    original trunk's up to the kept depth; a branch deeper than that needs a fresh ``compose``.
    """
    from mtbranch.branch.model import load_branch
    from mtbranch.plugins.manager import get_plugin_manager

    # the artifact must be one already (read_lock in load), and no --put directory may lie inside it
    path = check_output(path, "composed", inputs=list(put))  # ~ expanded, as for every output
    # read, modify and write under one lock: a concurrent update waits, then reads this one's result
    with exclusive_update(path):
        model = load(path)
        pm = get_plugin_manager()
        for name in remove:
            model.remove_branch(name)
        if put:
            report = Validator(model.trunk_source, plugin_manager=pm).validate([(Path(p), "directory") for p in put])
            if report.errors:
                raise ValidationFailed(report)
            for res in report.branches:
                b = load_branch(res.path, pm.head_type(res.manifest.head.type))
                b.source, b.artifact_path = "directory", res.path  # type: ignore[attr-defined]
                model.put_branch(b)
        return save_composed(model, path)
