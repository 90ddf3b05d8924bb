"""Journeys (issue 19): the documented commands, walked as a user walks them.

- Every `mtbranch ...` line in the README's and docs' shell blocks and in every command's --help parses
  against the current CLI (the command exists, its options exist, required ones are given).
- The examples runnable on a tiny composed artifact (predict, inspect, verify, schema, plugins) run for real.
- A new team's whole path runs from the README's "Make a branch for your team" block, in a fresh venv that
  sees this environment (example plugins installed): train -> new-plugin -> pip install -> plugins ->
  validate -> compose -> predict --input -> serve -> an HTTP request.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mtbranch.cli.main import cli

from helpers import free_port, make_serving_artifact

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "2>", "<"}


def shell_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` for each command in the file's non-Python fenced blocks, continuation
    lines joined."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    pending, start = "", 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip() or "text")
            continue
        if fence is None or fence in ("python", "py", "json", "toml", "yaml"):
            continue
        if not pending:
            start = n
        pending += stripped.removeprefix("$ ")
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        out.append((start, pending))
        pending = ""
    return out


def segments(command: str) -> list[list[str]]:
    """The simple commands of a shell line (split at && | ; & and redirections), comments dropped."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return []
    parts: list[list[str]] = [[]]
    skip = False
    for t in tokens:
        if skip:
            skip = False
            continue
        if t in OPERATORS:
            skip = t in {">", ">>", "2>", "<"}
            parts.append([])
            continue
        parts[-1].append(t)
    return [p for p in parts if p]


def documented() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for path in DOCS:
        for n, line in shell_blocks(path):
            for seg in segments(line):
                if seg[0] == "mtbranch" and "..." not in seg and not any(t.startswith("[") for t in seg):
                    found.append((f"{path.relative_to(ROOT)}:{n}", seg))  # "[--opt X]": a synopsis, not a run
    for name, cmd in sorted(cli.commands.items()):  # the --help examples too
        text = (cmd.help or "") + "\n" + (cmd.epilog or "")
        for i, line in enumerate(text.replace("\\\n", " ").splitlines()):
            line = line.strip()
            if line.startswith("mtbranch "):
                for seg in segments(line):
                    if seg[0] == "mtbranch" and "..." not in seg:
                        found.append((f"mtbranch {name} --help:{i}", seg))
    return found


DOCUMENTED = documented()


def test_docs_have_examples() -> None:
    assert len(DOCUMENTED) >= 60
    assert {seg[1] for _, seg in DOCUMENTED} >= {"predict", "compose", "validate", "train", "serve", "new-plugin"}


@pytest.mark.parametrize(("where", "argv"), DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    name = argv[1]
    if name.startswith("-"):
        cli.make_context("mtbranch", argv[1:])
        return
    assert name in cli.commands, f"{where}: `mtbranch {name}` is not a command"
    try:
        cli.commands[name].make_context(f"mtbranch {name}", argv[2:])
    except click.exceptions.Exit:
        pass  # --help / --version
    except click.UsageError as exc:
        raise AssertionError(f"{where}: {shlex.join(argv)}\n  {exc.format_message()}") from None


# -- the examples that run on a tiny composed artifact -------------------------------------------------------
RUNNABLE = {"predict", "inspect", "verify", "schema"}


@pytest.fixture(scope="module")
def workdir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the docs' file names exist: composed/ (tasks sentiment, entities, similarity) and
    the input files the predict examples read."""
    base = tmp_path_factory.mktemp("docs-run")
    art = make_serving_artifact(tiny_bert_dir, base / "build")
    shutil.copytree(art, base / "composed")
    lines = "the movie was very good\njohn visited paris\n"
    for name in ("reviews.txt", "texts.txt", "questions.txt", "10k-lines.txt"):
        (base / name).write_text(lines)
    (base / "pairs.tsv").write_text("sentence1\tsentence2\na good film\tthe good movie\n")
    return base


RUN = [(w, a) for w, a in DOCUMENTED if a[1] in RUNNABLE and "|" not in w]


@pytest.mark.parametrize(("where", "argv"), RUN, ids=[w for w, _ in RUN])
def test_documented_example_runs(where: str, argv: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    monkeypatch.chdir(workdir)
    args = [a if not a.endswith(".jsonl") else str(tmp_path / Path(a).name) for a in argv[1:]]  # outputs
    r = CliRunner().invoke(cli, args, input="")
    assert r.exit_code == 0, f"{where}: {shlex.join(argv)}\n{r.output[-2000:]}"
    assert "Traceback" not in r.output


# -- a new team's path, from the README ------------------------------------------------------------------
def readme_team_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Make a branch for your team", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    pending = ""
    for line in block.splitlines():
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending and not pending.startswith("#"):
            commands.append(pending)
        pending = ""
    return commands


def _intent_csv(path: Path, n: int) -> Path:
    rows = ["text,category"]
    kinds = {"card_arrival": ["where is my card", "my card has not arrived", "when will my card come"],
             "declined_card_payment": ["my card was declined", "why was my payment declined", "card refused"],
             "exchange_rate": ["what is the exchange rate", "how much is a dollar in euro", "rate for pounds"]}
    for i in range(n):
        label = list(kinds)[i % 3]
        rows.append(f'"{kinds[label][i % 3]}, please {i}",{label}')
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_team_journey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's walkthrough, command by command, in a venv with the example plugins visible."""
    monkeypatch.delenv("MTBRANCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)  # a user's environment
    from test_plugins import child_env, make_venv

    from mtbranch.plugins.manager import PluginManager

    if "minilm-l6" not in PluginManager().trunks():
        pytest.fail("the journey needs the example trunk plugin (make install / make test installs it)")
    python = make_venv(tmp_path / "venv")
    data = _intent_csv(tmp_path / "intents.csv", 90)
    (tmp_path / "questions.txt").write_text("my card was declined\nwhere is my card\n\nrate for pounds\n")
    env = child_env(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    commands = readme_team_block()
    port, server = 0, None
    assert [c.split()[1] for c in commands if c.startswith("mtbranch")] == [
        "train", "new-plugin", "plugins", "validate", "compose", "predict", "serve"]
    for command in commands:
        argv = shlex.split(command, comments=True)
        argv = [str(data) if a.endswith("banking77/train.csv") else a for a in argv]
        if argv[:2] == ["pip", "install"]:
            if any(a.startswith("mtbranch") for a in argv[2:]):
                continue  # the core, the extras and the trunk are this environment's
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", *argv[2:]], check=True, cwd=tmp_path, env=env)
            continue
        if argv[0] == "curl":
            body = argv[argv.index("-d") + 1].encode()
            url = next(a for a in argv if "localhost:" in a).replace("localhost:8000", f"127.0.0.1:{port}")
            req = urllib.request.Request("http://" + url, data=body, headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                answer = json.loads(resp.read())
            assert answer["results"][0]["support-intent"]["label"] in ("card_arrival", "declined_card_payment",
                                                               "exchange_rate"), answer
            continue
        assert argv[0] == "mtbranch", command
        if argv[1] == "serve":
            port = free_port()
            args = [a for a in argv[2:] if a != "&"]
            args[args.index("--port") + 1] = str(port)
            server = subprocess.Popen([str(python), "-m", "mtbranch.cli.main", "serve", *args], cwd=tmp_path,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            _wait_ready(port, server)
            continue
        r = subprocess.run([str(python), "-m", "mtbranch.cli.main", *argv[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        if argv[1] == "train":
            # the README runs train's defaults: up to 8 epochs, early stopping (patience 2) on the dev metric
            assert re.search(r"^epoch \d+/8 .*dev accuracy", r.stderr, flags=re.M), r.stderr[-2000:]
        if argv[1] == "plugins":
            assert re.search(r"^acme-support .*branches: support-intent", r.stdout, flags=re.M), r.stdout
        if argv[1] == "validate":
            assert re.search(r"^support-intent .*depth 4 \+2", r.stdout, flags=re.M), r.stdout
        if argv[1] == "compose":
            lock = json.loads((tmp_path / "composed" / "mtbranch.lock.json").read_text())
            assert [b["name"] for b in lock["branches"]] == ["support-intent"]  # --branch: exactly it
        if argv[1] == "predict":
            rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
            assert [(x["line"], x["text"]) for x in rows] == [(1, "my card was declined"), (2, "where is my card"),
                                                               (4, "rate for pounds")]
    assert server is not None
    server.terminate()
    assert server.wait(timeout=60) is not None


def _wait_ready(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited {server.returncode}: {server.stdout.read() if server.stdout else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError("serve did not become ready in 180 s")


if os.environ.get("MTBRANCH_JOURNEY_KEEP"):  # pragma: no cover - debugging aid
    print(sys.executable)
