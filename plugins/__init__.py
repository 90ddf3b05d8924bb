"""mtbranch's plugin system: pluggy hookspecs (``hookspecs``), the manager (``manager``), built-ins.

What a plugin author needs is importable from here without importing torch::

    from mtbranch.plugins import BranchLocation, hookimpl

    @hookimpl
    def mtbranch_branches() -> list[BranchLocation]:
        return [BranchLocation("sentiment", Path(__file__).parent / "branch")]
"""

from mtbranch.plugins.hookspecs import hookimpl, hookspec
from mtbranch.plugins.records import BranchLocation, Check, PluginInfo, TensorRule, TrunkFamily, TrunkProvider

__all__ = ["BranchLocation", "Check", "PluginInfo", "TensorRule", "TrunkFamily", "TrunkProvider", "hookimpl",
           "hookspec"]
