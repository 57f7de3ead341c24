"""keras_kd: knowledge distillation for Keras 3, on torch, TensorFlow and JAX."""

from keras_kd import losses
from keras_kd.distiller import Distiller
from keras_kd.features import FeatureMatch

__version__ = "0.1.0"

__all__ = ["Distiller", "FeatureMatch", "losses"]
