"""The private KerasHub attributes keras_kd reads, in one place.

KerasHub's Llama decoder layer (`LlamaTransformerDecoder`, shared by
`keras_hub.models.LlamaBackbone` and `Llama3Backbone`) keeps its feedforward
sublayers in private attributes and offers no public handle on them; width
pruning (`keras_kd.pruning`) needs them to record the activations that feed
the feedforward output projection and to know which kernels to slice.

Checked on keras-hub 0.32.0 (`KERAS_HUB_CHECKED`). The test
`tests/test_pruning.py::test_the_private_keras_hub_attributes_exist` fails
loudly, naming the missing attribute, when a KerasHub release renames one:
run it first when upgrading keras-hub.

This module imports KerasHub only inside its functions (it is optional).
"""

import dataclasses

KERAS_HUB_CHECKED = "0.32.0"

# The attributes of `LlamaTransformerDecoder` that hold its gated feedforward:
# output = output_dense(activation(gate_dense(x)) * intermediate_dense(x)).
LLAMA_FEEDFORWARD_ATTRIBUTES = {
    "gate": "_feedforward_gate_dense",
    "intermediate": "_feedforward_intermediate_dense",
    "output": "_feedforward_output_dense",
}


@dataclasses.dataclass(frozen=True)
class GatedFeedforward:
    """The three `keras.layers.Dense` of one decoder layer's gated feedforward (SwiGLU)."""

    gate: object
    intermediate: object
    output: object


def llama_backbone(model):
    """The `LlamaBackbone` (or subclass, e.g. `Llama3Backbone`) of `model`, or None.

    `model` may be the backbone itself or a KerasHub task (e.g.
    `Llama3CausalLM`) built on one. None when KerasHub is not installed.
    """
    try:
        import keras_hub
    except ImportError:
        return None
    backbone = model.backbone if isinstance(model, keras_hub.models.Task) else model
    return backbone if isinstance(backbone, keras_hub.models.LlamaBackbone) else None


def is_keras_hub_model(model):
    """Whether `model` is a KerasHub backbone or task (of any family)."""
    try:
        import keras_hub
    except ImportError:
        return False
    return isinstance(model, (keras_hub.models.Backbone, keras_hub.models.Task))


def llama_feedforwards(backbone):
    """`{decoder layer name: GatedFeedforward}` of a `LlamaBackbone`, in layer order.

    Raises:
        RuntimeError: a decoder layer lacks one of the private attributes
            (a KerasHub release renamed it); the message names it.
    """
    feedforwards = {}
    for layer in backbone.transformer_layers:
        missing = [name for name in LLAMA_FEEDFORWARD_ATTRIBUTES.values() if not hasattr(layer, name)]
        if missing:
            raise RuntimeError(
                f"{type(layer).__name__} {layer.name!r} has no attribute(s) {missing}: this KerasHub "
                f"release renamed the feedforward sublayers that keras_kd reads (checked on keras-hub "
                f"{KERAS_HUB_CHECKED}); see keras_kd/backend/_keras_hub_compat.py."
            )
        feedforwards[layer.name] = GatedFeedforward(
            **{role: getattr(layer, name) for role, name in LLAMA_FEEDFORWARD_ATTRIBUTES.items()}
        )
    return feedforwards
