"""The model code exactly as it ships next to the weights on the Hub (relative imports, torch and transformers
only): HyenaRec and the baselines SASRec, BERT4Rec and GRU4Rec. The library imports it as `hyenarec_hf.modeling`."""

from .configuration_bert4rec import BERT4RecConfig
from .configuration_gru4rec import GRU4RecConfig
from .configuration_hyenarec import HyenaRecConfig
from .configuration_sasrec import SASRecConfig
from .modeling_bert4rec import BERT4RecForNextItemPrediction, BERT4RecModel, BERT4RecPreTrainedModel
from .modeling_gru4rec import GRU4RecForNextItemPrediction, GRU4RecModel, GRU4RecPreTrainedModel
from .modeling_hyenarec import HyenaRecForNextItemPrediction, HyenaRecModel, HyenaRecPreTrainedModel
from .modeling_sasrec import SASRecForNextItemPrediction, SASRecModel, SASRecPreTrainedModel

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
