"""Every error ClearSep raises for unusable input shares one base, which the command line reports in one line."""

from __future__ import annotations

import pytest

from clearsep_data.audio import AudioError
from clearsep_data.build_folder import BuildError
from clearsep_data.cli.errors import USER_ERRORS
from clearsep_data.errors import ClearSepError, CorpusError
from clearsep_data.benchmark_folder import BenchmarkError
from clearsep_data.filtering import ThresholdsError
from clearsep_data.hub.staging import StagingError
from clearsep_data.hub.upload import HubUnreachableError
from clearsep_data.modeling import ClearSepLoadError
from clearsep_data.ontology import OntologyError
from clearsep_data.stats import StatsError
from clearsep_data.training import TrainingError
from clearsep_data.training.catalog import TrackDataError


@pytest.mark.parametrize(
    "error",
    [AudioError, BuildError, CorpusError, BenchmarkError, ThresholdsError, StagingError, HubUnreachableError, OntologyError, StatsError,
     TrainingError, TrackDataError],
)
def test_errors_share_the_clearsep_base(error):
    assert issubclass(error, ClearSepError) and issubclass(error, USER_ERRORS)


def test_the_model_folder_error_is_reported_by_the_command_line_too():
    assert issubclass(ClearSepLoadError, USER_ERRORS)  # the model folder imports nothing of ours: a ValueError
