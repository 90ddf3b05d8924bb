"""``hf:org/name[@revision]`` references, for trunks and branches alike, resolved offline-first.

The huggingface_hub cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``) is looked at first: a
revision already there is used without contacting the hub, so ``HF_HUB_OFFLINE=1`` works from a populated
cache (and a machine with no network keeps working). Only a revision missing from the cache, or cached without
a file the caller needs, is downloaded, and only the files the caller asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtbranch.errors import MtbranchError

PREFIX = "hf:"


def is_hub_reference(reference: str | Path) -> bool:
    """``hf:...`` (click may hand it over as a Path: ``hf:org/name`` survives that unchanged)."""
    return str(reference).startswith(PREFIX)


def split_reference(reference: str) -> tuple[str, str | None]:
    """``hf:org/name@rev`` -> ("org/name", "rev"); no ``@rev`` -> revision None (the hub's default branch).
    A repo id without an org (``hf:bert-base-uncased``, the hub's legacy canonical models) is accepted too."""
    spec = reference[len(PREFIX):] if reference.startswith(PREFIX) else reference
    repo, _, revision = spec.partition("@")
    if repo.count("/") > 1 or not all(repo.split("/")):  # "name" alone: a legacy canonical repo
        raise MtbranchError(f"{reference!r} is not a hub reference of the form hf:org/name[@revision]",
                            hint="e.g. hf:sentence-transformers/all-MiniLM-L6-v2@main")
    return repo, revision or None


def hub_snapshot(reference: str, allow_patterns: Sequence[str], required: Sequence[str], what: str) -> Path:
    """The local snapshot directory of ``reference`` holding ``required`` files (relative paths).

    Raises :class:`MtbranchError` (exit 1) when huggingface_hub is missing, the revision is not cached while
    ``HF_HUB_OFFLINE`` is set, or the hub cannot be reached or does not have it.
    """
    repo, revision = split_reference(reference)
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise MtbranchError(f"cannot resolve {reference}: huggingface_hub is not installed",
                            hint=f"pip install 'mtbranch[hub]', or pass a local {what} directory") from None
    where = "not in the hub cache"
    try:  # offline-first: the cache alone
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=list(allow_patterns),
                                      local_files_only=True))
        missing = [name for name in required if not (path / name).is_file()]
        if not missing:
            return path
        where = f"cached without {', '.join(missing)}"
    except Exception:  # not cached (LocalEntryNotFoundError), or an incomplete entry: go to the hub
        pass
    if constants.HF_HUB_OFFLINE:
        raise MtbranchError(
            f"cannot resolve {reference}: {where} ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set",
            hint=f"download it where the hub is reachable (`hf download {repo}"
                 f"{f' --revision {revision}' if revision else ''}`) into that cache, or unset HF_HUB_OFFLINE")
    try:
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=list(allow_patterns)))
    except Exception as exc:  # network, auth, missing repo or revision: all user-fixable
        raise MtbranchError(
            f"cannot download {reference} from the Hugging Face hub: {type(exc).__name__}: {exc}",
            hint=f"the hub may be unreachable here; download the {what} elsewhere and pass its directory",
        ) from None
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        raise MtbranchError(f"{reference} has no {', '.join(missing)}", path=str(path),
                            hint=f"is it an mtbranch {what}? check the repository's files")
    return path
