"""The HyenaRec model code exactly as it ships next to the weights on the Hub (relative imports, torch and
transformers only). The library imports it as `hyenarec_hf.modeling`."""

from .configuration_hyenarec import HyenaRecConfig
from .modeling_hyenarec import HyenaRecForNextItemPrediction, HyenaRecModel, HyenaRecPreTrainedModel

__all__ = ["HyenaRecConfig", "HyenaRecModel", "HyenaRecForNextItemPrediction", "HyenaRecPreTrainedModel"]
