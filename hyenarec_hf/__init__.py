"""HyenaRec-HF: HyenaRec sequential recommenders as Hugging Face models.

Importing this package registers the Auto classes, so `AutoConfig` / `AutoModel.from_pretrained(folder_or_repo)`
return HyenaRec models; saved folders also carry the model code (`auto_map`) for `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel

from .modeling import HyenaRecConfig, HyenaRecForNextItemPrediction, HyenaRecModel, HyenaRecPreTrainedModel

AutoConfig.register(HyenaRecConfig.model_type, HyenaRecConfig, exist_ok=True)
# AutoModel returns the model that scores next items: that is what a recommender checkpoint is for. The backbone
# alone is `HyenaRecModel`.
AutoModel.register(HyenaRecConfig, HyenaRecForNextItemPrediction, exist_ok=True)
# Saved folders carry the model code and an `auto_map`, so they load without this package.
HyenaRecConfig.register_for_auto_class()
HyenaRecForNextItemPrediction.register_for_auto_class("AutoModel")

__version__ = "0.1.0"

__all__ = [
    "HyenaRecConfig",
    "HyenaRecModel",
    "HyenaRecForNextItemPrediction",
    "HyenaRecPreTrainedModel",
]
