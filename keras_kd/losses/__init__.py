"""Distillation losses.

Each loss is a pure `keras.ops` function that returns one value per example,
so the caller decides how to reduce (and how to honour sample weights), plus a
thin serializable class on top. All math runs in float32, even when the models
run in a mixed-precision policy, and probabilities are handled in log space.

Two families:

* Logit losses (`DistillationLoss`): `loss(teacher_logits, student_logits,
  temperature, step=None)`. `SoftTargetKL` (Hinton et al., 2015),
  `DecoupledKD` (Zhao et al., 2022), and the divergences used to distil
  language models: `ReverseKL`, `GeneralizedJSD` (Agarwal et al., 2024) and
  `TotalVariation`. Each takes `standardize=True` for the logit
  standardization of Sun et al. (2024).
* Feature losses (`FeatureLoss`): `loss(teacher_feature, student_feature)`.
  `HintMSE` (FitNets), `AttentionTransfer`, `CosineFeatureLoss`, and the
  batch-level relational losses `RelationalKD` and `ProbabilisticKT`.
  `HintMSE` and `CosineFeatureLoss` also compare per position
  (`loss.per_position(...)`, e.g. per token of hidden states), so that the
  Distiller can leave padded positions out.

Where a paper and its reference code disagree, the docstrings say which one
is followed, so that hyperparameters published with the code carry over.

The functions live in one private module per family: `_logits` (the
divergences between logits and their chunking over positions, and logit
standardization), `_decoupled` (DKD), `_features` (feature losses, per
example or per position), `_relations` (batch-level relational losses) and
`_labels` (the hard-label term). The classes live in `_base` (the base
classes), `_logit_classes` and `_feature_classes`. Every public name is re-exported
here; `weighted_mean` is `keras_kd.positions.weighted_mean`.
"""

from keras_kd.losses._base import (
    DistillationLoss,
    FeatureLoss,
)
from keras_kd.losses._decoupled import (
    decoupled_kd,
)
from keras_kd.losses._feature_classes import (
    AttentionTransfer,
    CosineFeatureLoss,
    HintMSE,
    ProbabilisticKT,
    RelationalKD,
    get_feature_loss,
)
from keras_kd.losses._features import (
    attention_map,
    attention_transfer,
    cosine_feature_loss,
    hint_mse,
)
from keras_kd.losses._labels import (
    is_one_hot,
    label_cross_entropy,
    resolve_hard_loss,
)
from keras_kd.losses._logit_classes import (
    DecoupledKD,
    GeneralizedJSD,
    ReverseKL,
    SoftTargetKL,
    TotalVariation,
    get,
)
from keras_kd.losses._logits import (
    generalized_jsd,
    reverse_kl,
    soft_target_kl,
    standardize_logits,
    total_variation,
)
from keras_kd.losses._relations import (
    pkt,
    rkd_angle,
    rkd_distance,
)
from keras_kd.positions import (
    weighted_mean,
)

# In the order of the API reference (docs/api/losses.md renders them so).
__all__ = [
    # The classes.
    "DistillationLoss",
    "SoftTargetKL",
    "DecoupledKD",
    "ReverseKL",
    "GeneralizedJSD",
    "TotalVariation",
    "FeatureLoss",
    "HintMSE",
    "AttentionTransfer",
    "CosineFeatureLoss",
    "RelationalKD",
    "ProbabilisticKT",
    # Logit losses.
    "standardize_logits",
    "soft_target_kl",
    "decoupled_kd",
    "reverse_kl",
    "generalized_jsd",
    "total_variation",
    # The hard-label term and reductions.
    "label_cross_entropy",
    "is_one_hot",
    "weighted_mean",
    # Feature and relational losses.
    "hint_mse",
    "attention_map",
    "attention_transfer",
    "cosine_feature_loss",
    "rkd_distance",
    "rkd_angle",
    "pkt",
    # Lookup.
    "resolve_hard_loss",
    "get",
    "get_feature_loss",
]
