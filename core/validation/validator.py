"""The validation engine: every check a branch must pass before it is composed, as findings.

Branches are read from their artifact directories only: no plugin code is imported for ``--branch DIR``
and no tensor is loaded (weights are checked from the safetensors header, plus sha256 and a finite-values
scan over the memory-mapped data). The result is a :class:`Report` with a per-check status per branch.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import ValidationError

import mtbranch
from mtbranch.errors import MtbranchError
from mtbranch.heads.registry import typed_spec
from mtbranch.io.files import JsonFileError, is_inside, read_json_object, sha256_file
from mtbranch.io.safetensors_header import HeaderError, SafetensorsHeader, read_header
from mtbranch.spec.dtypes import DTYPES, numpy_views, safetensors_code
from mtbranch.spec.findings import Finding, finding
from mtbranch.spec.heads import HEAD_SPEC_TAGS
from mtbranch.spec.manifest import MANIFEST_NAME, BranchManifest, SchemaVersionError, upgrade
from mtbranch.spec.tensor_layout import expected_branch_tensors, head_input_size
from mtbranch.trunk.source import TrunkSource

CHECKS = ("files", "manifest", "head", "requires", "weights", "trunk", "tokenizer", "card", "policies")
LARGE_WEIGHT = 1e4  # |w| above this: outputs can overflow to Inf/NaN (float16 first: max 65504), W010


@dataclass
class BranchResult:
    path: Path
    name: str | None = None
    manifest: BranchManifest | None = None
    source: str | None = None  # plugin that provided it, or "directory"
    checks: dict[str, str] = field(default_factory=lambda: dict.fromkeys(CHECKS, "skipped"))

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": self.name, "path": str(self.path), "source": self.source,
            "version": m.version if m else None,
            "attach_depth": m.attach_depth if m else None, "num_layers": m.num_layers if m else None,
            "head": m.head.type if m else None, "checks": self.checks,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    branches: list[BranchResult] = field(default_factory=list)
    trunk: dict[str, Any] | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def status(self) -> str:
        if self.errors:
            return "failed"
        return "passed-with-warnings" if self.warnings else "passed"

    def exit_code(self, strict: bool = False) -> int:
        return 1 if self.errors or (strict and self.warnings) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mtbranch_version": mtbranch.__version__,
            "trunk": self.trunk,
            "summary": {"errors": len(self.errors), "warnings": len(self.warnings),
                        "branches": len(self.branches)},
            "branches": [b.to_dict() for b in self.branches],
            "findings": [f.to_dict() for f in self.findings],
        }


def _loc(path: Path, fieldpath: tuple[Any, ...] | str | None = None) -> str:
    if not fieldpath:
        return str(path)
    if isinstance(fieldpath, str):
        return f"{path}#{fieldpath}"
    return f"{path}#" + ".".join(str(p) for p in fieldpath)


MAX_TENSOR_FINDINGS = 20  # per weights file; the rest are counted in one more finding


def _family_shapes(m: BranchManifest, ht: Any) -> dict[str, tuple[int, ...]] | None:
    """The branch's trunk-family tensors for families other than BERT's (built on the meta device: imports
    torch); None for BERT-layout families, whose shapes the spec derives without torch."""
    from mtbranch.errors import MtbranchError
    from mtbranch.trunk.families import record_for

    try:
        if record_for(m.trunk.structure.model_type).structure_fields is None:
            return None
    except MtbranchError:
        return None  # an unknown family is reported by the trunk check
    from mtbranch.trunk.families import impl_for

    impl = impl_for(m.trunk.structure.model_type)
    sequence_level = ht.sequence_level if ht else True
    return impl.branch_shapes(m.trunk.structure, m.attach_depth, m.num_layers,
                              m.projection and (sequence_level or impl.token_projection))


def _non_finite(header: SafetensorsHeader) -> list[str]:
    """Names of floating tensors holding NaN/Inf, scanned through a read-only memory map."""
    import numpy as np

    bad = []
    arr = np.memmap(header.path, dtype=np.uint8, mode="r")
    views = {code: np.dtype(name) for code, name in numpy_views().items()}
    for name, info in header.tensors.items():
        raw = arr[info.start:info.end]
        if info.dtype in views:
            finite = bool(np.isfinite(raw.view(views[info.dtype])).all())
        elif info.dtype == DTYPES["bfloat16"].code:  # exponent bits all ones = NaN/Inf
            finite = not bool(((raw.view(np.uint16) & 0x7F80) == 0x7F80).any())
        else:
            finite = True
        if not finite:
            bad.append(name)
    return bad


def _large_weights(header: SafetensorsHeader, branch: str, location: str) -> list[Finding]:
    """W010 when a floating tensor holds a value over :data:`LARGE_WEIGHT` (one max-abs pass, memory-mapped)."""
    import numpy as np

    arr = np.memmap(header.path, dtype=np.uint8, mode="r")
    views = {code: np.dtype(name) for code, name in numpy_views().items()}
    worst, where = 0.0, ""
    for name, info in header.tensors.items():
        raw = arr[info.start:info.end]
        if not len(raw):
            continue
        if info.dtype in views:
            values = raw.view(views[info.dtype])
        elif info.dtype == DTYPES["bfloat16"].code:  # bfloat16 = the top half of a float32
            values = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            continue
        big = float(np.abs(values).max())
        if big > worst:
            worst, where = big, name
    if worst <= LARGE_WEIGHT:
        return []
    return [finding("W010", f"tensor {where!r} holds |w| = {worst:.3g} (over {LARGE_WEIGHT:.0e}): outputs can "
                            "overflow to Inf/NaN", branch=branch, location=location,
                    hint="check the training run (exploding weights); predictions that are not finite are "
                         "refused at run time")]


def _no_manifest(path: Path) -> str:
    """Why a branch path has no readable manifest.json: a symlink loop, a dangling link, no such directory."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
            return f"the branch path is a symlink loop ({path} -> {os.readlink(path)} -> ...)"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"the branch path is a symlink loop ({path} -> {os.readlink(path)} -> ...)"
            return f"the branch path is a symlink to {os.readlink(path)}, which does not exist"
    if not path.exists():
        return "the branch directory does not exist"
    if not path.is_dir():
        return "the branch path is a file, not a directory"
    return "no manifest.json in the branch directory"


class Validator:
    def __init__(self, trunk: TrunkSource | None = None, *, plugin_manager: Any | None = None,
                 tokenizer: Any | None = None, tokenizer_fingerprints: dict[str, Any] | None = None) -> None:
        self.trunk = trunk
        self.pm = plugin_manager
        self._tokenizer = tokenizer
        self._tok_fp = tokenizer_fingerprints  # already computed (put_branch: under the model's tokenizer lock)

    def head_types(self) -> dict[str, Any]:
        from mtbranch.plugins.manager import get_plugin_manager

        self.pm = get_plugin_manager(self.pm)  # the manager this validator was given, else the default
        return self.pm.head_types()

    def _head_type(self, name: str) -> Any:
        """One head type, without importing plugins for a built-in one (verify reads artifacts plugin-free)."""
        from mtbranch.plugins.manager import get_plugin_manager

        self.pm = get_plugin_manager(self.pm)
        try:
            return self.pm.head_type(name)
        except MtbranchError:  # unknown or ambiguous: reported by the head check (M005, P008)
            return None

    def tokenizer_fingerprints(self) -> dict[str, Any] | None:
        if self.trunk is None:
            return None
        if self._tok_fp is None:
            from mtbranch.trunk.tokenizer import load_tokenizer, tokenizer_fingerprints

            tok = self._tokenizer or load_tokenizer(self.trunk.path)
            self._tok_fp = tokenizer_fingerprints(tok)
        return self._tok_fp

    # -- per branch ---------------------------------------------------------------------------------
    def check_branch(self, path: Path, source: str = "directory") -> tuple[BranchResult, list[Finding]]:
        res = BranchResult(Path(path), source=source)
        out: list[Finding] = []
        mpath = res.path / MANIFEST_NAME
        res.name = res.path.name
        out += self._check_files(res)
        if not mpath.exists():  # a FIFO, device or directory in its place is M002 below (read_json_object refuses it)
            out.append(finding("M001", _no_manifest(res.path), branch=res.name,
                               location=str(res.path),
                               hint="a branch artifact is a directory with manifest.json and its weights"))
            res.checks["manifest"] = "failed"
            return res, out
        try:
            data = read_json_object(mpath)
        except (JsonFileError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            out.append(finding("M002", f"manifest.json is unusable: {reason}", branch=res.name,
                               location=str(mpath), hint="fix the JSON: one object, UTF-8, each key once"))
            res.checks["manifest"] = "failed"
            return res, out
        if isinstance(data.get("name"), str):
            res.name = data["name"]
        try:
            data = upgrade(data)
        except SchemaVersionError as exc:
            out.append(finding("M004", str(exc), branch=res.name, location=_loc(mpath, "schema_version"),
                               hint="upgrade mtbranch (`pip install -U mtbranch`) or re-export the branch"))
            res.checks["manifest"] = "failed"
            return res, out
        try:
            m = BranchManifest.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in HEAD_SPEC_TAGS))
                out.append(finding("M003", f"{'.'.join(map(str, loc)) or '(root)'}: {err['msg']}",
                                   branch=res.name, location=_loc(mpath, loc),
                                   hint="see `mtbranch schema` or docs/manifest.md for the field"))
            res.checks["manifest"] = "failed"
            return res, out
        res.manifest = m
        res.checks["manifest"] = "passed"
        out += self._check_head(res, m, mpath)
        out += self._check_requires(res, m, mpath)
        out += self._check_weights(res, m, mpath)
        out += self._check_trunk(res, m, mpath)
        out += self._check_tokenizer(res, m, mpath)
        out += self._check_card(res, m)
        out += self._check_policies(res, m)
        return res, out

    def check_loaded(self, m: BranchManifest, path: Path | None = None) -> list[Finding]:
        """check_branch's head, trunk, tokenizer and policy checks for a branch already in memory
        (``ComposedModel.put_branch``): one compatibility rule for every way a branch is added."""
        res = BranchResult(Path(path) if path is not None else Path(m.name), source="memory")
        res.name, res.manifest = m.name, m
        mpath = res.path / MANIFEST_NAME
        found = self._check_head(res, m, mpath) + self._check_trunk(res, m, mpath)
        found += self._check_tokenizer(res, m, mpath)
        return found + (self._check_policies(res, m) if path is not None else [])

    def _check_files(self, res: BranchResult) -> list[Finding]:
        """Links out, loops, links to ancestors and special files anywhere in the directory (never followed)."""
        from mtbranch.validation.tree import scan_tree

        if not res.path.is_dir():
            return []
        found = [finding(p.code, p.message, branch=res.name, location=str(p.path), hint=p.hint)
                 for p in scan_tree(res.path)]
        return self._mark(res, "files", found)

    def _mark(self, res: BranchResult, check: str, found: list[Finding]) -> list[Finding]:
        res.checks[check] = "failed" if any(f.severity == "error" for f in found) else (
            "warning" if found else "passed")
        return found

    def _check_head(self, res: BranchResult, m: BranchManifest, mpath: Path) -> list[Finding]:
        types = self.head_types()
        ht = types.get(m.head.type)
        if ht is None:
            return self._mark(res, "head", [finding(
                "M005", f"head type {m.head.type!r} is not registered", branch=m.name,
                location=_loc(mpath, "head.type"),
                hint=f"install the plugin that provides it; registered: {', '.join(sorted(types))}")])
        found = []
        if not isinstance(m.head, ht.spec_model):
            try:
                ht.spec_model.model_validate(m.head.model_dump())
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ("head", *err["loc"])
                    found.append(finding("M003", f"{'.'.join(map(str, loc))}: {err['msg']}", branch=m.name,
                                         location=_loc(mpath, loc)))
        return self._mark(res, "head", found)

    def _check_requires(self, res: BranchResult, m: BranchManifest, mpath: Path) -> list[Finding]:
        found = []
        if Version(mtbranch.__version__) not in SpecifierSet(m.requires, prereleases=True):
            found.append(finding("V001", f"branch requires mtbranch {m.requires}, running {mtbranch.__version__}",
                                 branch=m.name, location=_loc(mpath, "requires"),
                                 hint=f"install a matching mtbranch: pip install 'mtbranch{m.requires}'"))
        return self._mark(res, "requires", found)

    def _check_weights(self, res: BranchResult, m: BranchManifest, mpath: Path) -> list[Finding]:
        loc = _loc(mpath, "weights.path")
        wpath = res.path / m.weights.path
        if not is_inside(res.path, m.weights.path):
            return self._mark(res, "weights", [finding(
                "W008", f"weights.path {m.weights.path!r} is not a path inside the artifact directory",
                branch=m.name, location=loc, hint="use a plain file name such as 'branch.safetensors'")])
        if not wpath.is_file():
            return self._mark(res, "weights", [finding(
                "W001", f"weights file {m.weights.path!r} is missing", branch=m.name, location=str(wpath),
                hint="re-export the branch; the artifact must ship its safetensors file")])
        found: list[Finding] = []
        digest = sha256_file(wpath)
        if digest != m.weights.sha256:
            found.append(finding("W002", f"sha256 of {m.weights.path} is {digest[:12]}..., manifest says "
                                         f"{m.weights.sha256[:12]}...", branch=m.name,
                                 location=_loc(mpath, "weights.sha256"),
                                 hint="the file changed after export: re-export, or restore the original"))
        found += self.header_findings(m, wpath, mpath)
        return self._mark(res, "weights", found)

    def header_findings(self, m: BranchManifest, wpath: Path, mpath: Path) -> list[Finding]:
        """The weights file's tensors against the manifest (names, shapes, dtypes; then NaN/Inf and size): what
        validate and verify both check. At most :data:`MAX_TENSOR_FINDINGS` per file, then one with the count."""
        found: list[Finding] = []
        try:
            header = read_header(wpath)
        except (HeaderError, OSError) as exc:
            why = exc.message if isinstance(exc, HeaderError) else str(exc)
            return [finding("W003", f"cannot read the safetensors header: {why}", branch=m.name,
                            location=str(wpath), hint="re-export the branch with mtbranch")]
        ht = self._head_type(m.head.type)
        try:  # a plugin head's shapes come from its own spec model (its spec errors are M003 above)
            spec = typed_spec(ht, m.head) if ht else m.head
        except ValidationError:
            spec = m.head
        head_shapes = ht.tensor_shapes(spec, head_input_size(m)) if ht else None
        expected = expected_branch_tensors(m, head_shapes, sequence_level=ht.sequence_level if ht else None,
                                           family_shapes=_family_shapes(m, ht))
        code = safetensors_code(m.weights.dtype)
        for name, shape in expected.items():
            info = header.tensors.get(name)
            if info is None:
                found.append(finding("W004", f"tensor {name!r} {list(shape)} is missing", branch=m.name,
                                     location=str(wpath),
                                     hint="num_layers, pooling, projection or head in the manifest do not "
                                          "match the file"))
            elif info.shape != shape:
                found.append(finding("W006", f"tensor {name!r} has shape {list(info.shape)}, the declared "
                                             f"architecture needs {list(shape)}", branch=m.name,
                                     location=str(wpath)))
            elif info.dtype != code:
                found.append(finding("W007", f"tensor {name!r} is {info.dtype}, manifest weights.dtype is "
                                             f"{m.weights.dtype} ({code})", branch=m.name,
                                     location=_loc(mpath, "weights.dtype")))
        unexpected = sorted(set(header.tensors) - set(expected))
        total = len(found) + len(unexpected)
        for name in unexpected[:max(0, MAX_TENSOR_FINDINGS - len(found))]:
            found.append(finding("W005", f"unexpected tensor {name!r}", branch=m.name, location=str(wpath),
                                 hint="the file holds more than the manifest declares"))
        found = found[:MAX_TENSOR_FINDINGS]
        if total > len(found):  # a hostile header of 300,000 names: counted, not listed
            rest = finding("W005" if unexpected else found[-1].code,
                           f"{total - len(found)} more tensor findings in this file are not listed ({total} in "
                           f"all; {len(unexpected)} unexpected tensors)", branch=m.name, location=str(wpath),
                           hint="the file does not belong to this manifest: re-export the branch")
            found.append(rest)
        if found:
            return found
        bad = _non_finite(header)
        if bad:
            return [finding("W009", f"NaN/Inf values in {', '.join(bad[:5])}", branch=m.name,
                            location=str(wpath), hint="training diverged; retrain the branch")]
        return _large_weights(header, m.name, str(wpath))

    def _check_trunk(self, res: BranchResult, m: BranchManifest, mpath: Path) -> list[Finding]:
        if self.trunk is None:
            return []
        t = self.trunk
        found = []
        diffs = m.trunk.structure.differences(t.structure)
        if diffs:
            found.append(finding("T003", f"trunk structure differs: {'; '.join(diffs)}", branch=m.name,
                                 location=_loc(mpath, "trunk.structure"),
                                 hint="the branch was trained on another model family or size"))
        elif m.attach_depth > t.num_layers:
            found.append(finding("T002", f"attach_depth {m.attach_depth} exceeds the trunk's {t.num_layers} "
                                         "layers", branch=m.name, location=_loc(mpath, "attach_depth"),
                                 hint="use a trunk with at least that many layers"))
        elif m.trunk.fingerprint != t.fingerprints[m.attach_depth]:
            found.append(finding("T001", f"trunk fingerprint at depth {m.attach_depth} does not match "
                                         f"({m.trunk.fingerprint[:12]}... vs {t.fingerprints[m.attach_depth][:12]}"
                                         f"... in {t.reference})", branch=m.name,
                                 location=_loc(mpath, "trunk.fingerprint"),
                                 hint="the trunk's bottom layers differ from the ones the branch was trained "
                                      "on: use that trunk, or retrain the branch on this one"))
        return self._mark(res, "trunk", found)

    def _check_tokenizer(self, res: BranchResult, m: BranchManifest, mpath: Path) -> list[Finding]:
        try:
            fp = self.tokenizer_fingerprints()
        except Exception as exc:  # the trunk directory holds no usable tokenizer
            return self._mark(res, "tokenizer", [finding(
                "T004", f"cannot load the trunk's tokenizer: {type(exc).__name__}: {exc}", branch=m.name,
                location=str(self.trunk.path) if self.trunk else None,
                hint="the trunk directory must contain the tokenizer files (tokenizer.json or vocab.txt)")])
        if fp is None:
            return []
        c = m.tokenizer
        found = []
        if c.vocab_size != fp["vocab_size"] or c.special_token_ids != fp["special_token_ids"]:
            found.append(finding("K003", f"tokenizer vocab size/special ids {c.vocab_size}/{c.special_token_ids} "
                                         f"!= trunk's {fp['vocab_size']}/{fp['special_token_ids']}",
                                 branch=m.name, location=_loc(mpath, "tokenizer")))
        if c.probe_sha256 != fp["probe_sha256"]:
            found.append(finding("K001", "the trunk's tokenizer gives different token ids for the probe text",
                                 branch=m.name, location=_loc(mpath, "tokenizer.probe_sha256"),
                                 hint="the branch was trained with another tokenizer; retrain or use its trunk"))
        elif c.definition_sha256 != fp["definition_sha256"]:
            found.append(finding("K002", "tokenizer definition differs but gives identical probe ids",
                                 branch=m.name, location=_loc(mpath, "tokenizer.definition_sha256"),
                                 hint="usually a re-serialised tokenizer; check it if results look off"))
        return self._mark(res, "tokenizer", found)

    def _check_card(self, res: BranchResult, m: BranchManifest) -> list[Finding]:
        """W011 when README.md is a model card whose header disagrees with the manifest (no README.md, or a plain
        README without the Hub's metadata header: not a card, skipped)."""
        from mtbranch.branch.card import CARD_NAME, card_disagreements, is_card, read_card

        text = read_card(res.path)
        if text is None or not is_card(text):
            return []
        diffs = card_disagreements(text, m)
        found = [finding("W011", f"{CARD_NAME} disagrees with manifest.json: {', '.join(diffs[:8])}", branch=m.name,
                         location=str(res.path / CARD_NAME),
                         hint=f"regenerate it from the manifest: mtbranch inspect {res.path} --card > "
                              f"{res.path / CARD_NAME}")] if diffs else []
        return self._mark(res, "card", found)

    def _check_policies(self, res: BranchResult, m: BranchManifest) -> list[Finding]:
        if self.pm is None:
            return []
        found: list[Finding] = []
        from mtbranch.plugins.manager import captured_stdout, printed_finding

        for check in self.pm.checks():
            try:
                with captured_stdout() as buf:
                    got = check.run(m, res.path)
            except Exception as exc:
                got = [finding("P002", f"check {check.name!r} raised {type(exc).__name__}: {exc}",
                               branch=m.name)]
            if not isinstance(got, list) or not all(isinstance(f, Finding) for f in got):
                got = [finding("P003", f"check {check.name!r} returned {type(got).__name__}, not a list of "
                                       "Finding", branch=m.name)]
            if (f := printed_finding(f"check {check.name}", buf, "while validating", branch=m.name)) is not None:
                got = [*got, f]
            found += got
        return self._mark(res, "policies", found)

    # -- many branches ------------------------------------------------------------------------------
    def validate(self, branches: list[tuple[Path, str]]) -> Report:
        report = Report()
        if self.pm is not None:
            report.findings += self.pm.findings
        if self.trunk is not None:
            report.trunk = {"reference": self.trunk.reference, "path": str(self.trunk.path),
                            "num_layers": self.trunk.num_layers, "model_type": self.trunk.structure.model_type,
                            "hidden_size": self.trunk.structure.hidden_size}
        names: dict[str, Path] = {}
        for path, source in branches:
            res, found = self.check_branch(path, source)
            report.branches.append(res)
            report.findings += found
            if res.manifest is not None:
                if res.manifest.name in names:
                    report.findings.append(finding(
                        "C001", f"branch name {res.manifest.name!r} is used by {names[res.manifest.name]} and "
                                f"{path}", branch=res.manifest.name, location=str(path),
                        hint="task names must be unique in a composed model; rename one or pass --exclude"))
                names[res.manifest.name] = path
        lengths = {r.manifest.tokenizer.max_length for r in report.branches if r.manifest}
        if len(lengths) > 1:
            report.findings.append(finding(
                "K004", f"branches declare different max_length {sorted(lengths)}; composed inputs are "
                        f"truncated to {min(lengths)}", hint="align max_length across teams if this matters"))
        return report


def validate(branches: list[tuple[Path, str]], trunk: TrunkSource | None = None,
             plugin_manager: Any | None = None) -> Report:
    return Validator(trunk, plugin_manager=plugin_manager).validate(branches)

