"""``POST /admin/reload`` never hangs (issue 30, item 3): a FIFO in place of the lock file is refused at once,
a load past ``reload_timeout_s`` answers 409 while the old model serves, and the errors read as the CLI's."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import mtbranch.serve.routes as routes_mod
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import load
from mtbranch.serve.app import ServeSettings, create_app

from helpers import make_serving_artifact

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("reload"))


def _client(art: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(load(art), artifact=art, settings=ServeSettings(admin_token=TOKEN, **settings)))


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)


def _release_fifo_after(path: Path, seconds: float) -> threading.Event:
    """From ``seconds`` on, open the FIFO for writing every 0.2 s (each blocked reader then sees an empty file)
    until ``done``: a hang fails the test instead of blocking the suite."""
    done = threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.wait(0.2):
            with contextlib.suppress(OSError):  # no reader waiting right now (ENXIO)
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=release, daemon=True).start()
    return done


def test_reload_with_a_fifo_as_lock_file_answers_at_once(served: Path, tmp_path: Path) -> None:
    art = tmp_path / "c"
    shutil.copytree(served, art)
    with _client(art) as client:
        _ready(client)
        version = client.get("/health").json()["version"]
        (art / "mtbranch.lock.json").unlink()
        os.mkfifo(art / "mtbranch.lock.json")
        done = _release_fifo_after(art / "mtbranch.lock.json", 20)
        t0 = time.monotonic()
        r = client.post("/admin/reload", headers=AUTH)
        seconds = time.monotonic() - t0
        done.set()
        assert seconds < 10, f"reload blocked {seconds:.1f} s on the FIFO"
        assert r.status_code == 409 and "is a FIFO" in r.json()["error"], r.text
        assert client.get("/health").json()["version"] == version  # the old version still serves


def test_reload_error_reads_as_the_cli_message(served: Path, tmp_path: Path) -> None:
    art = tmp_path / "c"
    shutil.copytree(served, art)
    with _client(art) as client:
        _ready(client)
        (art / "mtbranch.lock.json").unlink()
        r = client.post("/admin/reload", headers=AUTH)
    cli_out = CliRunner().invoke(cli, ["verify", str(art)]).output
    message = cli_out.removeprefix("error: ").splitlines()[0]  # "<path>: not a composed artifact: ..."
    assert r.status_code == 409 and message in r.json()["error"], (r.text, cli_out)
    assert "Errno" not in r.json()["error"] and "FileNotFoundError" not in r.json()["error"]


def test_reload_past_its_deadline_answers_409_and_keeps_serving(served: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = threading.Event()

    def load_forever(*_args: Any, **_kw: Any) -> Any:
        stuck.wait(30)  # a load that does not come back (a blocked read, a hung file system)
        raise RuntimeError("released by the test")

    with _client(served, reload_timeout_s=0.5) as client:
        _ready(client)
        version = client.get("/health").json()["version"]
        monkeypatch.setattr(routes_mod, "load_served", load_forever)  # what the reload route calls
        t0 = time.monotonic()
        r = client.post("/admin/reload", headers=AUTH)
        seconds = time.monotonic() - t0
        stuck.set()
        assert r.status_code == 409 and "did not finish within 0.5 s" in r.json()["error"], r.text
        assert seconds < 10
        health = client.get("/health").json()
        assert health["version"] == version and health["last_reload"]["ok"] is False
        assert client.post("/predict", json={"texts": ["good"], "tasks": ["sentiment"]}).status_code == 200


STUCK_SERVE = """
import sys, threading
import mtbranch.serve.routes as routes
routes.load_served = lambda *a, **k: threading.Event().wait()  # a reload whose load never comes back
from mtbranch.cli.main import main
sys.argv = ["mtbranch", "serve", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_sigterm_ends_the_server_while_a_reload_is_stuck(served: Path) -> None:
    """A load that never returns (a hung file system) must not keep the process alive after SIGTERM."""
    import signal
    import subprocess
    import sys

    import httpx

    from helpers import free_port

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RELOAD_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-c", STUCK_SERVE, str(served), "--port", str(port), "--threads", "1",
                             "--grace", "1", "--admin-token-env", "RELOAD_TOKEN"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        with contextlib.suppress(httpx.TimeoutException):  # the reload does not answer: its load is stuck
            httpx.post(url + "/admin/reload", headers=AUTH, timeout=2)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not exit within 30 s of SIGTERM while a reload was stuck")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
