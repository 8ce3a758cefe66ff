"""ClearSep: turn natural multi-source audio into datasets of clean single-source tracks.

``from clearsep_data import ClearSepModel, ClearSepConfig`` imports the model lazily (torch and transformers are
only loaded when the model is first used, which keeps the command line fast) and registers ``"clearsep"`` with
transformers' ``AutoConfig`` / ``AutoModel`` / ``AutoFeatureExtractor`` and the
``audio-source-separation`` pipeline with ``PIPELINE_REGISTRY``.
"""

__version__ = "0.1.0"

_MODEL_EXPORTS = (
    "AudioSourceSeparationPipeline",
    "ClearSepConfig",
    "ClearSepFeatureExtractor",
    "ClearSepLoadError",
    "ClearSepModel",
    "ClearSepOutput",
)


def __getattr__(name: str):
    if name in _MODEL_EXPORTS:
        from clearsep_data import modeling

        return getattr(modeling, name)
    raise AttributeError(f"module 'clearsep_data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODEL_EXPORTS])


__all__ = ["__version__", *_MODEL_EXPORTS]
