"""mtbranch's plugin system: pluggy hookspecs (``hookspecs``), the manager (``manager``), built-ins."""
