"""ClearSepModel: a query-conditioned separation model in the style of a transformers model folder.

Importing this package registers ``model_type="clearsep"`` with ``AutoConfig``, ``AutoModel`` and
``AutoFeatureExtractor``, and the ``audio-source-separation`` pipeline with ``PIPELINE_REGISTRY``, so
``AutoModel.from_pretrained(folder_or_hub_id)`` loads a saved ClearSep model. Without this package, a saved model
loads from the code it carries (``trust_remote_code=True``, see :meth:`ClearSepModel.save_code`): the files of this
folder but this one import only each other (relatively) and third-party packages.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from clearsep_data.modeling.configuration_clearsep import ClearSepConfig
from clearsep_data.modeling.feature_extraction_clearsep import ClearSepFeatureExtractor
from clearsep_data.modeling.loading import ClearSepLoadError
from clearsep_data.modeling.losses import LOSSES, separation_loss
from clearsep_data.modeling.modeling_clearsep import ClearSepModel, ClearSepPreTrainedModel
from clearsep_data.modeling.outputs_clearsep import ClearSepOutput
from clearsep_data.modeling.pipeline_clearsep import TASK, AudioSourceSeparationPipeline
from clearsep_data.modeling.outputs_clearsep import ClearSepSeparationOutput

AutoConfig.register(ClearSepConfig.model_type, ClearSepConfig, exist_ok=True)
AutoModel.register(ClearSepConfig, ClearSepModel, exist_ok=True)
AutoFeatureExtractor.register(ClearSepConfig, ClearSepFeatureExtractor, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AudioSourceSeparationPipeline, pt_model=AutoModel, type="audio")

__all__ = [
    "LOSSES",
    "AudioSourceSeparationPipeline",
    "ClearSepConfig",
    "ClearSepFeatureExtractor",
    "ClearSepLoadError",
    "ClearSepModel",
    "ClearSepOutput",
    "ClearSepPreTrainedModel",
    "ClearSepSeparationOutput",
    "separation_loss",
]
