"""The ``mtbranch`` command line (click + rich). Heavy modules are imported inside commands only."""
