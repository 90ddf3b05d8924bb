"""``mtbranch canary``: canary releases of one branch on a running ``mtbranch serve``, over its admin API (httpx).

The server does the work (:mod:`mtbranch.serve.canary_routes`); this client sends the admin bearer token from an
environment variable and prints the server's answer, or its ``{"error", "hint"}`` as an error (exit 1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.output import console, esc

MODES = ("shadow", "split")


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")(fn)
    fn = click.option("--token-env", default="MTBRANCH_ADMIN_TOKEN", show_default=True, metavar="VAR",
                      help="Environment variable holding the server's admin token.")(fn)
    return click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="MTBRANCH_URL",
                        help="The server (env MTBRANCH_URL).")(fn)


def call(url: str, token_env: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The admin API's JSON answer; its error (or an unreachable server) as an MtbranchError."""
    import httpx

    from mtbranch.errors import MtbranchError, UsageError

    token = os.environ.get(token_env)
    if not token:
        raise UsageError(f"environment variable {token_env} is not set",
                         hint="export the token the server was started with (mtbranch serve --admin-token-env)")
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, timeout=600,
                          headers={"authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise MtbranchError(f"cannot reach the server at {url}: {exc}",
                            hint="check --url (env MTBRANCH_URL) and that `mtbranch serve` runs") from None
    try:
        answer = r.json()
    except ValueError:
        answer = {"error": r.text[:200]}
    if r.status_code != 200:
        raise MtbranchError(f"{method} {path}: {r.status_code} {answer.get('error', '')}", hint=answer.get("hint"))
    return dict(answer)


def _show(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    rows = answer.get("canaries", [answer]) if "canaries" in answer or "mode" in answer else [answer]
    for row in rows:
        console.print("  ".join(f"{k}={esc(str(v))}" for k, v in row.items()), soft_wrap=True)
    for p in answer.get("promoted", []):
        console.print(f"promoted {esc(p['task'])} {p['version']} (rollback restores {p['previous_version']})")
    if answer.get("canaries") == [] and not answer.get("promoted"):
        console.print("no canary running")


@click.group()
def canary() -> None:
    """Canary one branch's new version on a running server: shadow, split, promote, rollback.

    \b
    Example (the server started with MTBRANCH_ADMIN_TOKEN set):
      mtbranch canary start ./sentiment-v2 --mode shadow
      mtbranch canary set sentiment --mode split --fraction 0.1 --key-header x-user
      mtbranch canary status
      mtbranch canary promote sentiment      # the artifact's lock records v2
      mtbranch canary rollback sentiment     # v1 back (on disk too, after a promotion)
    """


@canary.command()
@click.argument("branch_dir", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(MODES), default="shadow", show_default=True)
@click.option("--fraction", type=P.FRACTION, default=0.0, show_default=True,
              help="split: the share of request keys version B answers.")
@click.option("--key-header", default="x-mtbranch-key", show_default=True,
              help="split: the request header that keeps a client on one version.")
@_options
def start(branch_dir: Path, mode: str, fraction: float, key_header: str, url: str, token_env: str,
          as_json: bool) -> None:
    """Load BRANCH_DIR (a path on the server's machine) as version B of the task it names."""
    body = {"branch_dir": str(branch_dir.absolute()), "mode": mode, "fraction": fraction, "key_header": key_header}
    _show(call(url, token_env, "POST", "/admin/canary", body), as_json)


@canary.command("set")
@click.argument("task")
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--fraction", type=P.FRACTION, default=None)
@click.option("--key-header", default=None)
@_options
def set_mode(task: str, mode: str, fraction: float | None, key_header: str | None, url: str, token_env: str,
             as_json: bool) -> None:
    """Change TASK's canary mode, split fraction or key header."""
    body = {"mode": mode, "fraction": fraction, "key_header": key_header}
    _show(call(url, token_env, "POST", f"/admin/canary/{task}", body), as_json)


@canary.command()
@click.argument("task")
@_options
def promote(task: str, url: str, token_env: str, as_json: bool) -> None:
    """Make TASK's canary live; the artifact's lock records it (rewritten atomically)."""
    _show(call(url, token_env, "POST", f"/admin/canary/{task}/promote"), as_json)


@canary.command()
@click.argument("task")
@_options
def rollback(task: str, url: str, token_env: str, as_json: bool) -> None:
    """Drop TASK's canary, or put the previous version back after a promotion."""
    _show(call(url, token_env, "POST", f"/admin/canary/{task}/rollback"), as_json)


@canary.command()
@_options
def status(url: str, token_env: str, as_json: bool) -> None:
    """The canaries running and the promotions that can be rolled back."""
    _show(call(url, token_env, "GET", "/admin/canary"), as_json)
