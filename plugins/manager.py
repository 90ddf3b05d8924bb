"""The plugin manager: loads each ``mtbranch`` entry point in its own try/except (as conda does).

A plugin that fails to import, raises in a hook or returns the wrong type becomes a finding and a row in
``mtbranch plugins``; the others keep working. ``MTBRANCH_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry-point
loading off; ``MTBRANCH_PLUGINS=a,b`` loads only those entry points (or distributions). Nothing here
imports torch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import io
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pluggy

from mtbranch.errors import MtbranchError
from mtbranch.heads.training import training_problem
from mtbranch.plugins import builtin, hookspecs
from mtbranch.plugins.records import BranchLocation, Check, PluginInfo, TensorRule, TrunkFamily, TrunkProvider
from mtbranch.spec.findings import Finding, finding

ENTRY_POINT_GROUP = "mtbranch"
DISABLE_ENV = "MTBRANCH_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "MTBRANCH_PLUGINS"
HOOK_RECORDS: dict[str, type | str] = {
    "mtbranch_branches": BranchLocation,
    "mtbranch_trunks": TrunkProvider,
    "mtbranch_head_types": "HeadType",  # imported lazily: head_types pulls in pydantic models only
    "mtbranch_checks": Check,
    "mtbranch_trunk_families": TrunkFamily,
}


def _record_type(hook: str) -> type:
    rt = HOOK_RECORDS[hook]
    if isinstance(rt, str):
        from mtbranch.heads.registry import HeadType

        return HeadType
    return rt


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, so ``MTBRANCH_PLUGINS=mtbranch_sentiment`` matches ``mtbranch-sentiment``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_problem(records: Any, record_type: type[Any]) -> str | None:
    """Why a hook's return value is unusable, or None when it is a list of well-formed records."""
    if not isinstance(records, list | tuple):
        return f"returned {type(records).__name__} instead of a list of {record_type.__name__}"
    for rec in records:
        if not isinstance(rec, record_type):
            return f"returned a {type(rec).__name__} in its list instead of a {record_type.__name__}"
        name = getattr(rec, "name", None)
        if not isinstance(name, str) or not name:
            return f"returned a {record_type.__name__} whose name is {name!r}, not a non-empty string"
        path = getattr(rec, "path", None)
        if hasattr(rec, "path") and not isinstance(path, str | os.PathLike):
            return f"returned {record_type.__name__} {name!r} whose path is a {type(path).__name__}"
        if isinstance(rec, Check) and not callable(rec.run):
            return f"returned Check {name!r} whose run is not callable"
        if isinstance(rec, TrunkFamily) and (why := _family_problem(rec)):
            return f"returned TrunkFamily {name!r} whose {why}"
        if record_type.__name__ == "HeadType" and (why := training_problem(rec.training)):
            return f"returned HeadType {name!r} whose {why}"
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(x, str) and x for x in value)


def _family_problem(rec: TrunkFamily) -> str | None:
    """The first field of a family record of the wrong type (a dataclass checks nothing): validate used to
    crash on ``model_types=None`` instead of reporting the plugin."""
    import re

    if not _strings(rec.model_types) or not rec.model_types:
        return f"model_types is {rec.model_types!r}, not a non-empty list of model_type strings"
    if not isinstance(rec.implementation, str) or ":" not in rec.implementation:
        return f"implementation is {rec.implementation!r}, not 'package.module:attribute'"
    if not isinstance(rec.anchor, str) or not rec.anchor:
        return f"anchor is {rec.anchor!r}, not a tensor name"
    if not isinstance(rec.tensors, list | tuple) or not rec.tensors:
        return f"tensors is {type(rec.tensors).__name__}, not a list of TensorRule"
    for rule in rec.tensors:
        if not isinstance(rule, TensorRule) or not isinstance(rule.pattern, str) or not isinstance(rule.key, str) \
                or rule.group not in ("embeddings", "layer", "final"):
            return f"tensors holds {rule!r}, not a TensorRule(pattern, group embeddings|layer|final, key)"
        try:
            re.compile(rule.pattern)
        except re.error as exc:
            return f"tensor rule pattern {rule.pattern!r} is not a regular expression ({exc})"
    if rec.structure_fields is not None and not _strings(rec.structure_fields):
        return f"structure_fields is {rec.structure_fields!r}, not None or a list of config keys"
    if not isinstance(rec.config_aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in rec.config_aliases.items()):
        return f"config_aliases is {rec.config_aliases!r}, not a dict of strings"
    if rec.normalize is not None and not callable(rec.normalize):
        return "normalize is not callable"
    if not isinstance(rec.example, dict) or not all(isinstance(k, str) for k in rec.example):
        return f"example is {type(rec.example).__name__}, not a dict of config.json keys"
    if not callable(rec.layer_flops):
        return "layer_flops is not callable"
    if not isinstance(rec.onnx, bool) or not isinstance(rec.description, str):
        return "onnx is not a bool or description not a string"
    return None


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    """Plugin code runs with stdout captured: a ``print`` in a plugin must not corrupt mtbranch's own output
    (``--format json``, ``plugins --json``, ``predict --json``). What it printed becomes finding P007."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


def printed_finding(plugin: str, buf: io.StringIO, when: str, branch: str | None = None) -> Finding | None:
    text = buf.getvalue().strip()
    if not text:
        return None
    shown = text if len(text) <= 120 else text[:117] + "..."
    return finding("P007", f"plugin {plugin!r} printed to stdout {when} (captured, not shown there): {shown!r}",
                   branch=branch, location=plugin,
                   hint="a plugin must log (logging) or write to stderr: stdout carries mtbranch's output")


class PluginManager:
    def __init__(self, *, autoload: bool | None = None, allow: Iterable[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._findings: list[Finding] = []
        self.infos: dict[str, PluginInfo] = {}
        self._cache: dict[str, list[tuple[str, Any]]] = {}
        self._ambiguous: dict[tuple[str, str], list[str]] = {}
        self._collecting = False
        from mtbranch import __version__

        self.register(builtin, "builtin", distribution="mtbranch", version=__version__)
        if autoload is None:
            autoload = os.environ.get(DISABLE_ENV, "").lower() not in {"1", "true", "yes"}
        if allow is None and os.environ.get(ALLOW_ENV):
            allow = [a.strip() for a in os.environ[ALLOW_ENV].split(",") if a.strip()]
        # Entry points are imported on first need, so that e.g. loading a composed model whose heads are all
        # built in never imports plugin code.
        self._pending_load = autoload
        self._allow = set(allow) if allow is not None else None
        self._loaded: set[tuple[str | None, str, str]] = set()

    def _ensure_loaded(self) -> None:
        if self._pending_load:
            self.load_entry_points(self._allow)

    @property
    def findings(self) -> list[Finding]:
        """Every plugin finding (P001-P008). Reading it calls each hook once, so that a hook returning
        garbage is reported even when the command at hand did not need that hook yet."""
        if not self._collecting:
            self._collecting = True
            try:
                self.plugin_infos()
            finally:
                self._collecting = False
        return self._findings

    # -- registration -------------------------------------------------------------------------------
    def register(self, plugin: object, name: str, *, distribution: str | None = None,
                 version: str | None = None) -> None:
        info = self.infos.setdefault(name, PluginInfo(name, distribution, version))
        known = {h for h in HOOK_RECORDS}
        unknown = sorted(a for a in dir(plugin) if a.startswith("mtbranch_") and a not in known)
        for hook in unknown:
            self._report(info, finding("P004", f"plugin {name!r} implements unknown hook {hook!r}",
                                       location=name, hint=f"known hooks: {', '.join(sorted(known))}"))
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._report(info, finding("P001", f"plugin {name!r} could not be registered: {exc}", location=name))
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._cache.clear()

    def load_entry_points(self, allow: set[str] | None = None) -> None:
        """Load every ``mtbranch`` entry point, each in its own try/except (a failure is finding P001).

        ``allow`` keeps only entry points whose name or distribution name is listed (PEP 503-normalised).
        """
        self._pending_load = False
        wanted = {canonical_name(a) for a in allow} if allow is not None else None
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if ep.value == builtin.__name__ or (dist_name, ep.name, ep.value) in self._loaded:
                continue
            if wanted is not None and not {canonical_name(ep.name), canonical_name(dist_name or "")} & wanted:
                continue
            # Two distributions may pick the same entry point name: keep both, the second under a longer name.
            self._loaded.add((dist_name, ep.name, ep.value))
            name = ep.name if ep.name not in self.infos else f"{dist_name}:{ep.name}"
            info = self.infos.setdefault(name, PluginInfo(name, dist_name, dist.version if dist is not None else None))
            try:
                with captured_stdout() as buf:
                    plugin = ep.load()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._report(info, finding(
                    "P001", f"plugin {name!r} ({dist_name}) failed to import: {type(exc).__name__}: {exc}",
                    location=f"entry point {ep.name} = {ep.value}",
                    hint=f"fix or uninstall {dist_name}; set {ALLOW_ENV} to load only the plugins you need"))
                continue
            if (f := printed_finding(name, buf, "at import")) is not None:
                self._report(info, f)
            self.register(plugin, name, distribution=dist_name, version=info.version)

    def _report(self, info: PluginInfo, f: Finding) -> None:
        if f in self._findings:
            return
        info.errors.append(f"{f.code}: {f.message}")
        self._findings.append(f)

    # -- calling hooks ------------------------------------------------------------------------------
    def call(self, hook: str) -> list[tuple[str, Any]]:
        """``[(plugin name, record)]`` from every implementation, each called in its own try/except."""
        self._ensure_loaded()
        if hook in self._cache:
            return self._cache[hook]
        record_type = _record_type(hook)
        results: list[tuple[str, Any]] = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            name = impl.plugin_name
            info = self.infos.setdefault(name, PluginInfo(name))
            try:
                with captured_stdout() as buf:
                    out = impl.function()
            except Exception as exc:
                self._report(info, finding("P002", f"plugin {name!r} hook {hook} raised {type(exc).__name__}: "
                                                   f"{exc}", location=name))
                continue
            if (f := printed_finding(name, buf, f"in hook {hook}")) is not None:
                self._report(info, f)
            if out is None:
                continue
            problem = _record_problem(out, record_type)
            if problem:
                self._report(info, finding("P003", f"plugin {name!r} hook {hook} {problem}; ignored", location=name,
                                           hint=f"return [{record_type.__name__}(...), ...] from {hook}"))
                continue
            results.extend((name, r) for r in out)
        self._cache[hook] = results
        return results

    def branches(self) -> dict[str, tuple[str, BranchLocation]]:
        out: dict[str, tuple[str, BranchLocation]] = {}
        for plugin, rec in self.call("mtbranch_branches"):
            if rec.name in out:
                other = out[rec.name][0]
                self._report(self.infos[plugin], finding(
                    "P005", f"branch {rec.name!r} is provided by both {other!r} and {plugin!r}; keeping {other!r}'s",
                    branch=rec.name, location=plugin, hint="uninstall one of the two plugins, or rename a branch"))
                continue
            out[rec.name] = (plugin, rec)
            if rec.name not in self.infos[plugin].branches:
                self.infos[plugin].branches.append(rec.name)
        return out

    def _unique(self, hook: str, attr: str, kind: str) -> dict[str, Any]:
        """``name -> record``. A head type or trunk name registered twice is ambiguous: finding P008 (an error)
        for each extra registration, and the name resolves to neither record (:meth:`ambiguous` says who).
        A check name registered twice keeps the first (P006, a warning): both are policies of the same name."""
        out: dict[str, Any] = {}
        owners: dict[str, list[str]] = {}
        for plugin, rec in self.call(hook):
            key = getattr(rec, attr)
            owners.setdefault(key, []).append(plugin)
            lst = getattr(self.infos[plugin], {"trunk": "trunks", "head type": "head_types",
                                               "check": "checks"}[kind])
            if key not in lst:
                lst.append(key)
            if key not in out:
                out[key] = rec
                continue
            first = owners[key][0]
            if kind == "check":
                self._report(self.infos[plugin], finding(
                    "P006", f"check {key!r} is registered by both {first!r} and {plugin!r}; keeping {first!r}'s",
                    location=plugin))
            else:
                self._report(self.infos[plugin], finding(
                    "P008", f"{kind} {key!r} is registered by both {first!r} and {plugin!r}; neither is used",
                    location=plugin, hint=f"uninstall one of the two plugins, or set {ALLOW_ENV} to load only one"))
        if kind != "check":
            for key, who in owners.items():
                if len(who) > 1:
                    out.pop(key, None)
                    self._ambiguous[(kind, key)] = who
        return out

    def ambiguous(self, kind: str, name: str) -> list[str] | None:
        """The plugins that all register head type / trunk ``name`` (finding P008), or None."""
        return self._ambiguous.get((kind, name))

    def trunks(self) -> dict[str, TrunkProvider]:
        return self._unique("mtbranch_trunks", "name", "trunk")

    def head_types(self) -> dict[str, Any]:
        return self._unique("mtbranch_head_types", "name", "head type")

    def head_type(self, name: str) -> Any:
        if self._pending_load:  # a built-in head needs no plugin imported
            for ht in builtin.mtbranch_head_types():
                if ht.name == name:
                    return ht
        types = self.head_types()
        both = self.ambiguous("head type", name)
        if both:
            raise MtbranchError(f"head type {name!r} is registered by {' and '.join(map(repr, both))} (P008)",
                                hint=f"uninstall one of them, or set {ALLOW_ENV} to load only one")
        if name not in types:
            raise MtbranchError(f"head type {name!r} is not registered",
                                hint=f"install the plugin that provides it; known: {', '.join(sorted(types))}")
        return types[name]

    def trunk_families(self) -> dict[str, TrunkFamily]:
        """``model_type`` -> family record; a model_type claimed twice keeps the first (finding P006)."""
        out: dict[str, TrunkFamily] = {}
        owner: dict[str, str] = {}
        for plugin, rec in self.call("mtbranch_trunk_families"):
            for model_type in rec.model_types:
                if model_type in out:
                    self._report(self.infos[plugin], finding(
                        "P006", f"trunk family for model_type {model_type!r} is registered by both "
                                f"{owner[model_type]!r} and {plugin!r}; keeping {owner[model_type]!r}'s",
                        location=plugin))
                    continue
                out[model_type], owner[model_type] = rec, plugin
                if rec.name not in self.infos[plugin].families:
                    self.infos[plugin].families.append(rec.name)
        return out

    def trunk_family(self, model_type: str) -> TrunkFamily | None:
        """The family for a config ``model_type`` (built-in families need no plugin imported), or None."""
        if self._pending_load:
            for rec in builtin.mtbranch_trunk_families():
                if model_type in rec.model_types:
                    return rec
        return self.trunk_families().get(model_type)

    def checks(self) -> list[Check]:
        return list(self._unique("mtbranch_checks", "name", "check").values())

    def plugin_infos(self) -> list[PluginInfo]:
        self._ensure_loaded()
        self.branches()
        self.trunks()
        self.head_types()
        self.checks()
        self.trunk_families()
        return list(self.infos.values())


# -- the one accessor ------------------------------------------------------------------------------------------
# Lifetime: one process-wide default manager, created on the first get_plugin_manager() call from the environment
# (MTBRANCH_DISABLE_PLUGIN_AUTOLOAD, MTBRANCH_PLUGINS) and kept for the life of the process; entry points are
# imported on first need, hook results cached. Code that is handed a manager (the CLI builds one per command and
# passes it down; compose/validate/load take ``plugin_manager=``) uses that one: get_plugin_manager(explicit)
# returns it unchanged. reset_plugin_manager() drops the default (tests; a long-lived process after a pip
# install); use_plugin_manager(pm) installs one for a block.
_manager: PluginManager | None = None


def get_plugin_manager(explicit: PluginManager | None = None) -> PluginManager:
    """``explicit`` when given, else the process-wide default (created on first use)."""
    global _manager
    if explicit is not None:
        return explicit
    if _manager is None:
        _manager = PluginManager()
    return _manager


def set_plugin_manager(manager: PluginManager | None) -> None:
    """Install ``manager`` as the process-wide default; None drops it (the next use builds one from the env)."""
    global _manager
    _manager = manager


def reset_plugin_manager() -> None:
    """Forget the process-wide default: the next :func:`get_plugin_manager` rebuilds it from the environment."""
    set_plugin_manager(None)


@contextlib.contextmanager
def use_plugin_manager(manager: PluginManager) -> Iterator[PluginManager]:
    """Make ``manager`` the default inside the block, restoring the previous one after (tests, embedding)."""
    global _manager
    previous, _manager = _manager, manager
    try:
        yield manager
    finally:
        _manager = previous
