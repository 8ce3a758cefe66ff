"""The local copy of a Hub repository, built before anything is uploaded.

Staging first means the exact repository can be inspected (``--dry-run``, ``--stage-dir``) and
checked (no secret in any file) before a single byte leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clearsep_data.errors import ClearSepError

SECRET_KEY = re.compile(r"(^|[_-])(token|secret|password|passwd|api[_-]?key|credentials?)($|[_-])", re.IGNORECASE)
"""Keys dropped from published JSON: ``hub_token``, ``wandb_api_key``, ``password``... (not ``tokenizer``)."""
LONG_LIST = 20


class StagingError(ClearSepError):
    """Input that cannot be published, with the file and the reason."""


@dataclass(frozen=True)
class StagedRepo:
    """A folder holding exactly what the Hub repository will hold."""

    path: Path
    repo_type: str
    """``"dataset"`` or ``"model"`` (huggingface_hub's names)."""
    repo_id: str
    replaced_patterns: tuple[str, ...]
    """Remote files this upload owns: those matching and not re-uploaded are deleted (stale shards)."""

    def files(self) -> list[tuple[str, int]]:
        """``(path in repo, size in bytes)`` of every staged file, sorted by path."""
        return sorted(
            (path.relative_to(self.path).as_posix(), path.stat().st_size)
            for path in self.path.rglob("*")
            if path.is_file()
        )

    @property
    def total_size(self) -> int:
        return sum(size for _, size in self.files())


def prepare_stage_dir(stage_dir: str | os.PathLike) -> Path:
    """Create ``stage_dir``; an existing folder must be empty (nothing stale gets uploaded)."""
    path = Path(stage_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StagingError(f"{path}: the stage folder must be empty or not exist yet")
    path.mkdir(parents=True, exist_ok=True)
    return path


def redact_secrets(value):
    """``value`` (parsed JSON) without the entries whose key looks like a credential."""
    if isinstance(value, dict):
        return {key: redact_secrets(item) for key, item in value.items() if not SECRET_KEY.search(str(key))}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a clear error naming the file otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise StagingError(f"{path}: cannot read JSON ({error})") from None
    if not isinstance(value, dict):
        raise StagingError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
"""A Hub repository id, ``org/name``."""


def is_hub_id(name: str) -> bool:
    """``name`` looks like a Hub id and is not a local path."""
    return bool(HUB_ID.match(name)) and not os.path.exists(name)


def flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of nested JSON as ``("a.b", "value")`` rows, for the cards' provenance tables."""
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            rows += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            shown = ", ".join(str(item) for item in value[:LONG_LIST])
            return [(prefix, shown + (f", ... ({len(value)} items)" if len(value) > LONG_LIST else ""))]
        return [row for index, item in enumerate(value) for row in flatten(item, f"{prefix}[{index}]")]
    if isinstance(value, float):
        return [(prefix, f"{value:g}")]
    return [(prefix, "" if value is None else str(value))]


def render_card(card_class, card_data, template_name: str, **values):
    """``card_class.from_template`` with the template ``template_name`` of ``clearsep_data.cards``.

    Runs of blank lines left by the template's control blocks are collapsed to one.
    """
    template = resources.files("clearsep_data.cards").joinpath(template_name).read_text(encoding="utf-8")
    card = card_class.from_template(card_data, template_str=template, **values)
    return card_class(re.sub(r"\n{3,}", "\n\n", str(card)).strip() + "\n")


def assert_token_absent(staged: StagedRepo, token: str | None) -> None:
    """Refuse to upload when the token appears in any staged file (it must never be published)."""
    if not token:
        return
    needle = token.encode()
    for relative, _ in staged.files():
        with open(staged.path / relative, "rb") as handle:
            tail = b""
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                if needle in tail + chunk:
                    raise StagingError(f"{staged.path / relative}: contains the Hub token; refusing to upload it")
                tail = chunk[-(len(needle) - 1) :] if len(needle) > 1 else b""
