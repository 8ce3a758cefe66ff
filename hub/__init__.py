"""Staging and pushing ClearSep datasets and models to the Hugging Face Hub.

Each repository is first written to a local folder (:func:`stage_dataset`, :func:`stage_model`),
exactly as it will be on the Hub, then uploaded in one call (:func:`upload_staged`).
"""

from clearsep_data.hub.dataset import stage_dataset
from clearsep_data.hub.model import stage_model
from clearsep_data.hub.staging import StagedRepo, StagingError
from clearsep_data.hub.upload import UploadResult, upload_staged

__all__ = ["StagedRepo", "StagingError", "UploadResult", "stage_dataset", "stage_model", "upload_staged"]
