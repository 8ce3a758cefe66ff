"""A local stand-in for the Hugging Face Hub, for tests: olah serving git repos from a mirror folder.

olah (https://github.com/vtuber-plan/olah) is a Hub mirror server. With ``mirrors-path`` set and
``offline = true`` it answers the Hub's HTTP API (``/api/{type}s/{org}/{name}/revision/{rev}``,
``tree``, ``paths-info``, ``resolve``) from plain git repositories laid out as
``{mirror_root}/{datasets|models}/{org}/{name}`` and never contacts huggingface.co. Files are
committed as ordinary git blobs (no LFS needed), branches are git branches.

Usage from a test (see the ``hub`` fixture in ``conftest.py``)::

    commit = hub.publish(staged_dir, "dataset", "clearsep/tracks")
    load_dataset("clearsep/tracks")          # HF_ENDPOINT points at the server

Only the test process talks to the server, which binds to 127.0.0.1 on a free port. olah answers
``Range`` requests on mirrored files with the whole file (status 200), which breaks every reader
that seeks (streaming ``load_dataset``, pyarrow over ``HfFileSystem``); the Hub answers them with
206 and the requested bytes, so this module runs olah's app behind :class:`RangeRequests`, which
does the same. olah also answers a file missing from an existing repository as a missing repository
(401 ``RepoNotFound``, or 500 on GET), which transformers turns into an error where the Hub's
404 ``EntryNotFound`` makes it try the next file; :class:`MissingFiles` answers as the Hub does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_TYPE_FOLDERS = {"dataset": "datasets", "model": "models"}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ClearSep tests",
    "GIT_AUTHOR_EMAIL": "tests@clearsep.invalid",
    "GIT_COMMITTER_NAME": "ClearSep tests",
    "GIT_COMMITTER_EMAIL": "tests@clearsep.invalid",
}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    result = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def publish_to_mirror(
    staged_dir: str | os.PathLike,
    mirror_root: str | os.PathLike,
    repo_type: str,
    repo_id: str,
    *,
    revision: str = "main",
    message: str = "Upload from ClearSep tests",
) -> str:
    """Commit the files of ``staged_dir`` as the whole content of ``repo_id`` at ``revision``.

    ``repo_type`` is ``"dataset"`` or ``"model"`` (huggingface_hub's names). The repository is
    created on first use; later calls add a commit that replaces the content of the branch
    (a non-``main`` branch starts from ``main``). Returns the commit sha, which is what the Hub
    reports as the revision's ``sha``.
    """
    if repo_type not in REPO_TYPE_FOLDERS:
        raise ValueError(f"repo_type must be one of {sorted(REPO_TYPE_FOLDERS)}, got {repo_type!r}")
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    repo = Path(mirror_root) / REPO_TYPE_FOLDERS[repo_type] / repo_id
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
    branches = _git(repo, "branch", "--list", "--format=%(refname:short)").split()
    if revision in branches:
        _git(repo, "checkout", "-q", revision)
    else:
        _git(repo, "checkout", "-q", "-b", revision)
    for entry in repo.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(staged_dir, repo, dirs_exist_ok=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OlahServer:
    """An olah process serving ``mirror_root`` offline on ``http://127.0.0.1:{port}``."""

    def __init__(self, mirror_root: str | os.PathLike, work_dir: str | os.PathLike):
        self.mirror_root = Path(mirror_root)
        self.work_dir = Path(work_dir)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> OlahServer:
        self.mirror_root.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{self.work_dir / "cache"}"\n'
            f'mirrors-path = ["{self.mirror_root}"]\n'
            f'mirror-netloc = "127.0.0.1:{self.port}"\nmirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            "[accessibility]\noffline = true\n",
            encoding="utf-8",
        )
        self.log = open(self.work_dir / "olah.out", "wb")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--config", str(config), "--log-path", str(self.work_dir / "logs")],
            cwd=self.work_dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited with {self.process.returncode}: {self.output()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/api/whoami-v2", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # any HTTP answer means the server is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"olah did not answer on {self.endpoint} within {timeout:.0f} s: {self.output()[-2000:]}")

    def output(self) -> str:
        return (self.work_dir / "olah.out").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if not self.log.closed:
            self.log.close()

    def publish(self, staged_dir: str | os.PathLike, repo_type: str, repo_id: str, **kwargs) -> str:
        """:func:`publish_to_mirror` into this server's mirror folder."""
        return publish_to_mirror(staged_dir, self.mirror_root, repo_type, repo_id, **kwargs)


def point_hub_clients_at(monkeypatch, endpoint: str, hf_home: str | os.PathLike) -> None:
    """Make huggingface_hub, datasets and transformers talk to ``endpoint`` with an empty cache in ``hf_home``.

    These libraries read ``HF_ENDPOINT``/``HF_HOME`` once, at import, into module constants, so
    setting the environment is not enough for this process: the constants are patched too (the
    environment is still set, for subprocesses). No token is sent; Xet and telemetry are off.
    """
    import datasets.config
    import huggingface_hub.constants as constants
    from huggingface_hub import HfFileSystem

    hf_home = Path(hf_home)
    hub_cache = hf_home / "hub"
    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_OFFLINE": False,
    }.items():
        monkeypatch.setattr(constants, name, value)
    datasets_cache = hf_home / "datasets"
    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_CACHE_HOME": str(hf_home),
        "HF_DATASETS_CACHE": datasets_cache,
        "DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
        "EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
        "HF_MODULES_CACHE": hf_home / "modules",
        "HF_HUB_OFFLINE": False,
        "HF_DATASETS_OFFLINE": False,
    }.items():
        monkeypatch.setattr(datasets.config, name, value)
    HfFileSystem.clear_instance_cache()  # cached instances remember the endpoint they were made with


class RangeRequests:
    """ASGI middleware: answer a ``Range: bytes=...`` GET whose response is a full 200 with 206 and that slice."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        ranges = dict(scope.get("headers", [])).get(b"range") if scope["type"] == "http" else None
        if scope["type"] != "http" or scope["method"] != "GET" or not ranges:
            return await self.app(scope, receive, send)
        start_message, chunks = {}, []

        async def collect(message):
            if message["type"] == "http.response.start":
                start_message.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, collect)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start_message.get("headers", []) if k.lower() not in (b"content-length", b"content-range")]
        status = start_message["status"]
        first, _, last = ranges.decode().removeprefix("bytes=").partition("-")
        if status == 200 and "," not in last:
            start = max(len(body) - int(last), 0) if first == "" else int(first)
            end = len(body) - 1 if first == "" or last == "" else min(int(last), len(body) - 1)
            headers.append((b"content-range", f"bytes {start}-{end}/{len(body)}".encode()))
            status, body = 206, body[start : end + 1]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class MissingFiles:
    """ASGI middleware: a ``resolve`` request for a file that an existing mirrored repository lacks gets the Hub's
    answer, 404 with ``X-Error-Code: EntryNotFound``, instead of olah's 401 ``RepoNotFound`` (HEAD) or 500 (GET)."""

    def __init__(self, app, mirror_roots: list[str]):
        self.app = app
        self.mirror_roots = [Path(root) for root in mirror_roots]

    def _repository_exists(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        folder = "models"
        if parts and parts[0] in ("datasets", "models"):
            folder, parts = parts[0], parts[1:]
        if len(parts) < 4 or parts[2] != "resolve":
            return False
        return any((root / folder / parts[0] / parts[1]).is_dir() for root in self.mirror_roots)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self._repository_exists(scope["path"]):
            return await self.app(scope, receive, send)
        missing = False

        async def answer(message):
            nonlocal missing
            if message["type"] == "http.response.start" and message["status"] in (401, 500):
                missing = True
                body = b'{"error":"Entry not found"}'
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                           (b"x-error-code", b"EntryNotFound"), (b"x-error-message", b"Entry not found")]  # fmt: skip
                await send({"type": "http.response.start", "status": 404, "headers": headers})
                await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
            elif not missing:
                await send(message)

        await self.app(scope, receive, answer)


def _serve() -> None:
    """``python hubserver.py --config olah.toml --log-path DIR``: olah's server as the Hub answers (see above)."""
    import uvicorn
    from olah import server

    args = server.init()
    mirrors = server.app.state.app_settings.config.mirrors_path
    uvicorn.run(RangeRequests(MissingFiles(server.app, mirrors)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    _serve()
