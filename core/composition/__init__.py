"""Composition: composing branches into one model, the composed artifact (lock, save, load, verify, update)."""
