"""Upload a staged repository to the Hub (``HF_ENDPOINT`` honoured) in one ``upload_folder`` call.

In huggingface_hub 2.x ``upload_folder`` is the large-folder path too: with ``hf_xet`` it streams
the files, creates one commit for ordinary sizes and automatically splits very large folders into
several resumable commits (``upload_large_folder`` no longer exists).
"""

from __future__ import annotations

from dataclasses import dataclass

from clearsep_data.errors import ClearSepError
from clearsep_data.hub.staging import StagedRepo, assert_token_absent

DEFAULT_BRANCH = "main"


class HubUnreachableError(ClearSepError):
    """The Hub endpoint gave no HTTP answer at all (connection refused, timed out, unknown host)."""


@dataclass(frozen=True)
class UploadResult:
    repo_url: str
    commit_url: str
    revision: str


def default_commit_message(staged: StagedRepo) -> str:
    files = staged.files()
    return f"Upload {staged.repo_type} with clearsep-data ({len(files)} files)"


def upload_staged(
    staged: StagedRepo,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> UploadResult:
    """Create ``staged.repo_id`` if needed (and the branch ``revision``), then upload the staged folder.

    ``token=None`` lets huggingface_hub find one (``HF_TOKEN``, then the saved login). Remote files
    matching ``staged.replaced_patterns`` that are not re-uploaded are deleted in the same commit,
    so a re-push with fewer shards leaves no stale shard behind. The token is never logged. An endpoint
    that gives no answer raises :class:`HubUnreachableError` naming it.
    """
    from huggingface_hub import HfApi, get_token

    assert_token_absent(staged, token or get_token())
    api = HfApi(token=token)
    branch = revision or DEFAULT_BRANCH
    try:
        repo_url = api.create_repo(staged.repo_id, repo_type=staged.repo_type, private=private, exist_ok=True)
        if branch != DEFAULT_BRANCH:
            api.create_branch(staged.repo_id, branch=branch, repo_type=staged.repo_type, exist_ok=True)
        commit = api.upload_folder(
            repo_id=staged.repo_id,
            folder_path=staged.path,
            repo_type=staged.repo_type,
            revision=branch,
            commit_message=commit_message or default_commit_message(staged),
            delete_patterns=list(staged.replaced_patterns),
        )
    except _connection_error() as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HubUnreachableError(
            f"could not reach the Hub at {api.endpoint} ({reason}); check HF_ENDPOINT and the network"
        ) from None
    return UploadResult(repo_url=str(repo_url), commit_url=commit.commit_url, revision=branch)


def _connection_error() -> type[Exception]:
    """The base class of the failures with no HTTP answer, in the client huggingface_hub uses (httpx2 from 2.0, httpx in 1.x).

    They are not ``HfHubHTTPError``s: uncaught, they ended ``push`` with a traceback of hundreds of lines.
    """
    try:
        import httpx2 as client
    except ImportError:
        import httpx as client
    return client.TransportError
