"""``clearsep-data push dataset|model``: stage the exact Hub repository locally, then upload it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import fail
from clearsep_data.cli.progress import with_one_progress_display

app = typer.Typer(
    name="push",
    help="Publish a track dataset or a trained model to the Hugging Face Hub (HF_ENDPOINT and HF_TOKEN honoured).",
    no_args_is_help=True,
)

RepoId = Annotated[str, typer.Option("--repo-id", help="Hub repository, e.g. clearsep/tracks.")]
Token = Annotated[
    Optional[str],
    typer.Option(help="Hub token with write access. Default: HF_TOKEN, then the saved `hf auth login` token.", show_default=False),
]
Private = Annotated[bool, typer.Option("--private", help="Create the repository private (an existing one keeps its visibility).")]
Revision = Annotated[Optional[str], typer.Option(help="Branch to commit to; created from main if missing. Default: main.")]
CommitMessage = Annotated[Optional[str], typer.Option(help="Commit title.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Stage only and print what would be uploaded.")]
StageDir = Annotated[
    Optional[Path], typer.Option(help="Empty folder to stage the repository in (kept). Default: a temporary folder.")
]


@app.command("dataset")
@with_one_progress_display
def push_dataset(
    dataset_dir: Annotated[Path, typer.Argument(help="Track dataset folder written by `clearsep-data build`.")],
    repo_id: RepoId,
    license: Annotated[
        str,
        typer.Option(help="Licence id of the card. Default 'other': AudioSet labels are CC BY 4.0 but the audio belongs to YouTube uploaders."),
    ] = "other",
    max_shard_size: Annotated[str, typer.Option(help="Largest parquet shard (uncompressed), e.g. 500MB.")] = "500MB",
    pretty_name: Annotated[Optional[str], typer.Option(help="Title of the dataset card.")] = None,
    corpus_id: Annotated[Optional[str], typer.Option(help="Hub id of the corpus the build read, named in the card instead of its local path.")] = None,
    model_id: Annotated[Optional[str], typer.Option(help="Hub id of the separation model the build used, named in the card instead of its local path.")] = None,
    token: Token = None,
    private: Private = False,
    revision: Revision = None,
    commit_message: CommitMessage = None,
    dry_run: DryRun = False,
    stage_dir: StageDir = None,
) -> None:
    """Re-shard the parquet files, write plots, stats and the dataset card, and upload them in one commit."""
    from clearsep_data.hub.dataset import stage_dataset

    _push(
        lambda folder: stage_dataset(
            dataset_dir, folder, repo_id=repo_id, license=license, max_shard_size=max_shard_size, pretty_name=pretty_name,
            corpus_id=corpus_id, model_id=model_id,
        ),
        token=token, private=private, revision=revision, commit_message=commit_message, dry_run=dry_run, stage_dir=stage_dir,
    )  # fmt: skip


@app.command("model")
@with_one_progress_display
def push_model(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `ClearSepModel.save_pretrained` (or `clearsep-data train`).")],
    repo_id: RepoId,
    license: Annotated[str, typer.Option(help="Licence id of the weights.")] = "apache-2.0",
    dataset: Annotated[
        Optional[list[str]],
        typer.Option(help="Hub id of a training dataset, for the card metadata (repeatable). Default: from training_args.json."),
    ] = None,
    dataset_id: Annotated[
        Optional[str],
        typer.Option(help="Hub id of the dataset eval.json was scored on, named in the card's model-index (which is left out without a Hub id)."),
    ] = None,
    token: Token = None,
    private: Private = False,
    revision: Revision = None,
    commit_message: CommitMessage = None,
    dry_run: DryRun = False,
    stage_dir: StageDir = None,
) -> None:
    """Copy config and safetensors weights, write the model card (with eval.json results), and upload them."""
    from clearsep_data.hub.model import stage_model

    _push(
        lambda folder: stage_model(model_dir, folder, repo_id=repo_id, license=license, datasets=dataset or None, dataset_id=dataset_id),
        token=token, private=private, revision=revision, commit_message=commit_message, dry_run=dry_run, stage_dir=stage_dir,
    )  # fmt: skip


def _push(
    stage: Callable,
    *,
    token: str | None,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    dry_run: bool,
    stage_dir: Path | None,
) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError
    from rich.console import Console

    from clearsep_data.hub.staging import StagingError
    from clearsep_data.hub.upload import HubUnreachableError, upload_staged

    console = Console()
    with tempfile.TemporaryDirectory(prefix="clearsep-stage-") if stage_dir is None else nullcontext() as temporary:
        folder = Path(temporary) / "repo" if stage_dir is None else stage_dir
        try:
            with console.status("Staging the repository..."):
                staged = stage(folder)
        except StagingError as error:
            fail(error)
        _print_staged(console, staged)
        target = f"{staged.repo_type} repository {staged.repo_id} (branch {revision or 'main'}) at {constants.ENDPOINT}"
        if dry_run:
            console.print(f"Dry run: nothing uploaded. Would upload to the {target}.", soft_wrap=True)
            if stage_dir is None:
                console.print("Pass --stage-dir DIR to keep the staged repository.")
            return
        try:
            with console.status(f"Uploading to the {target}..."):
                result = upload_staged(
                    staged, token=token, private=True if private else None, revision=revision, commit_message=commit_message
                )
        except (StagingError, HfHubHTTPError, HubUnreachableError) as error:
            fail(f"upload failed: {str(error).splitlines()[0]}")
        console.print(f"Uploaded: {result.commit_url}", soft_wrap=True)


def _print_staged(console, staged) -> None:
    """The staged repository as a file tree with sizes."""
    from rich.tree import Tree

    from clearsep_data.stats import human_bytes

    files = staged.files()
    tree = Tree(f"[bold]{staged.repo_id}[/bold] ({staged.repo_type}, {len(files)} files, {human_bytes(staged.total_size)})")
    folders = {"": tree}
    for path, size in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            key = "/".join(parts[:depth])
            if key not in folders:
                folders[key] = folders["/".join(parts[: depth - 1])].add(f"{parts[depth - 1]}/")
        folders["/".join(parts[:-1])].add(f"{parts[-1]}  [dim]{human_bytes(size)}[/dim]")
    console.print(tree)
