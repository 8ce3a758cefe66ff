"""ClearSepModel: a query-conditioned separation model in the style of a transformers model folder.

Importing this package registers ``model_type="clearsep"`` with ``AutoConfig`` and ``AutoModel``, so
``AutoModel.from_pretrained(folder_or_hub_id)`` loads a saved ClearSep model.
"""

from transformers import AutoConfig, AutoModel

from clearsep_data.modeling.configuration_clearsep import ClearSepConfig
from clearsep_data.modeling.feature_extraction_clearsep import ClearSepFeatureExtractor
from clearsep_data.modeling.loading import ClearSepLoadError
from clearsep_data.modeling.losses import LOSSES, separation_loss
from clearsep_data.modeling.modeling_clearsep import ClearSepModel, ClearSepOutput, ClearSepPreTrainedModel

AutoConfig.register(ClearSepConfig.model_type, ClearSepConfig, exist_ok=True)
AutoModel.register(ClearSepConfig, ClearSepModel, exist_ok=True)

__all__ = [
    "LOSSES",
    "ClearSepConfig",
    "ClearSepFeatureExtractor",
    "ClearSepLoadError",
    "ClearSepModel",
    "ClearSepOutput",
    "ClearSepPreTrainedModel",
    "separation_loss",
]
