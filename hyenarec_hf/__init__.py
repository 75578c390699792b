"""HyenaRec-HF: HyenaRec sequential recommenders (and the SASRec, BERT4Rec and GRU4Rec baselines) as Hugging Face
models.

Importing this package registers the Auto classes, so `AutoConfig` / `AutoModel.from_pretrained(folder_or_repo)`
return these models; saved folders also carry the model code (`auto_map`) for `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel

from .modeling import (
    BERT4RecConfig,
    BERT4RecForNextItemPrediction,
    BERT4RecModel,
    BERT4RecPreTrainedModel,
    GRU4RecConfig,
    GRU4RecForNextItemPrediction,
    GRU4RecModel,
    GRU4RecPreTrainedModel,
    HyenaRecConfig,
    HyenaRecForNextItemPrediction,
    HyenaRecModel,
    HyenaRecPreTrainedModel,
    SASRecConfig,
    SASRecForNextItemPrediction,
    SASRecModel,
    SASRecPreTrainedModel,
)

# AutoModel returns the model that scores next items: that is what a recommender checkpoint is for. The backbone
# alone is `HyenaRecModel` (`SASRecModel`, ...).
for _config_class, _model_class in (
    (HyenaRecConfig, HyenaRecForNextItemPrediction),
    (SASRecConfig, SASRecForNextItemPrediction),
    (BERT4RecConfig, BERT4RecForNextItemPrediction),
    (GRU4RecConfig, GRU4RecForNextItemPrediction),
):
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    # Saved folders carry the model code and an `auto_map`, so they load without this package.
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModel")
del _config_class, _model_class

__version__ = "0.1.0"

__all__ = [
    "HyenaRecConfig",
    "HyenaRecModel",
    "HyenaRecForNextItemPrediction",
    "HyenaRecPreTrainedModel",
    "SASRecConfig",
    "SASRecModel",
    "SASRecForNextItemPrediction",
    "SASRecPreTrainedModel",
    "BERT4RecConfig",
    "BERT4RecModel",
    "BERT4RecForNextItemPrediction",
    "BERT4RecPreTrainedModel",
    "GRU4RecConfig",
    "GRU4RecModel",
    "GRU4RecForNextItemPrediction",
    "GRU4RecPreTrainedModel",
]
