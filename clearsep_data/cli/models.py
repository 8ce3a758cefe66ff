"""Loading the model a command runs, as every command reports it."""

from __future__ import annotations

from clearsep_data.cli.errors import USER_ERRORS, fail


def load_separator(model: str, device: str | None):
    """The ``ClearSepModel`` at ``model`` (folder or Hub id) in eval mode on ``device`` (default: cuda if available),
    or one error line naming it."""
    import torch

    from clearsep_data.modeling import ClearSepModel

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return ClearSepModel.from_pretrained(model).to(device).eval()
    except USER_ERRORS as error:
        fail(f"cannot load model {model!r}: {error}")
