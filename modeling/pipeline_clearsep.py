"""The ``audio-source-separation`` pipeline: a mixture and queries in, one waveform per query out.

Importing ``clearsep_data`` registers it with transformers' ``PIPELINE_REGISTRY``; a saved model names it in
``config.custom_pipelines`` and carries this file, so that in an environment with transformers alone

    pipeline("audio-source-separation", model="org/model", trust_remote_code=True)

builds it. transformers gives a repository's ``custom_pipelines`` precedence over the registry, so with ClearSep
installed too a repository id still needs ``trust_remote_code=True`` (or ``pipeline_class=AudioSourceSeparationPipeline``);
a model object (``pipeline("audio-source-separation", model=model)``) needs neither.

This file imports only third-party packages: it is shipped with saved models as remote code.
"""

from __future__ import annotations

import numpy as np
from transformers import Pipeline
from transformers.pipelines.audio_utils import ffmpeg_read

TASK = "audio-source-separation"


class AudioSourceSeparationPipeline(Pipeline):
    r"""
    Separates the sounds named by queries from audio with a query-conditioned separator ([`ClearSepModel`]).

    The feature extractor (`preprocessor_config.json`, or the model's own when the folder has none) turns the input
    into mono `input_values` at the model's rate; [`ClearSepModel.separate`] then runs the model in overlapping
    chunks. The result holds one waveform per query at the model's rate.

    Example:

    ```python
    >>> from transformers import pipeline

    >>> separator = pipeline("audio-source-separation", model="org/clearsep-model", trust_remote_code=True)
    >>> result = separator("mixture.wav", queries=["Speech", "Bark"])
    >>> speech, bark = result["audio"]  # float32 arrays at result["sampling_rate"]
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_tokenizer = False
    _load_feature_extractor = None  # the repository's preprocessor_config.json when there is one

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            self.feature_extractor = self.model.feature_extractor

    def __call__(self, inputs, **kwargs):
        """Separate the sounds named by `queries` from each input.

        Args:
            inputs: a waveform (numpy array or tensor, `(samples,)` or `(channels, samples)`) at `sampling_rate`; a
                dict with `"array"` (or `"raw"`) and `"sampling_rate"`, as a `datasets` `Audio` column gives; the
                path of an audio file or its bytes (decoded by ffmpeg); or a list of these.
            queries: what to extract from every input, e.g. display names or AudioSet MIDs (required). Passed to
                [`ClearSepModel.separate`] as they are, with any other keyword argument (`chunk_seconds`,
                `use_bf16`, ...); `batch_size` is the pipeline's own: how many inputs share one `separate` call.
            sampling_rate (`int`, *optional*): rate of a bare waveform (default: the model's).

        Returns:
            A dict (a list of them for a list of inputs) with `"audio"`, one float32 `(samples,)` array per query in
            the order of the queries, and `"sampling_rate"`, the model's rate, at which the arrays are.
        """
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, queries=None, sampling_rate=None, **separate_kwargs):
        preprocess_params = {} if sampling_rate is None else {"sampling_rate": sampling_rate}
        forward_params = dict(separate_kwargs)
        if queries is not None:
            forward_params["queries"] = queries
        return preprocess_params, forward_params, {}

    def preprocess(self, inputs, sampling_rate: int | None = None):
        rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str):
            with open(inputs, "rb") as file:
                inputs = file.read()
        if isinstance(inputs, bytes):
            inputs = ffmpeg_read(inputs, rate)
            sampling_rate = rate
        elif isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("array" in inputs or "raw" in inputs):
                raise ValueError(
                    f"a dict input needs 'array' (or 'raw') and 'sampling_rate', got keys {sorted(inputs)}"
                )
            sampling_rate = inputs["sampling_rate"]
            inputs = inputs["array"] if "array" in inputs else inputs["raw"]
        (input_values,) = self.feature_extractor(inputs, sampling_rate=sampling_rate or rate)["input_values"]
        return {"input_values": input_values}

    def _forward(self, model_inputs, queries=None, **separate_kwargs):
        """One input's `(samples,)` array, or a list of them when the pipeline batches (`batch_size`): separated in
        one `separate` call, which batches the chunks of all of them."""
        if queries is None:
            raise ValueError("pass queries=[...]: what to separate, e.g. display names or AudioSet MIDs")
        values = model_inputs["input_values"]
        if isinstance(values, list):
            return {"separated": self.model.separate(values, [queries] * len(values), **separate_kwargs)}
        return {"separated": self.model.separate(values, queries, **separate_kwargs)}

    def postprocess(self, model_outputs):
        separated = np.asarray(model_outputs["separated"])
        tracks = separated[0] if separated.ndim == 3 else separated  # a batched item comes as (1, queries, samples)
        return {"audio": list(tracks), "sampling_rate": self.feature_extractor.sampling_rate}

    @classmethod
    def custom_pipelines(cls) -> dict[str, dict]:
        """The `config.custom_pipelines` entry by which transformers finds this pipeline in a model repository."""
        return {TASK: {"impl": f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}", "pt": ["AutoModel"], "type": "audio"}}


__all__ = ["TASK", "AudioSourceSeparationPipeline"]
