"""Benchmarks: composed vs one model per task, measured side by side in one process."""
