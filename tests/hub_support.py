"""Tiny KerasHub causal LMs built from configs (random weights, no preprocessor), shared by the tests."""


def llama3_lm(num_layers, hidden_dim, name, vocabulary_size):
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None, name=name)


def gemma3_lm(num_layers, hidden_dim, name, vocabulary_size):
    """A text-only Gemma 3 (no vision encoder)."""
    import keras_hub

    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=vocabulary_size,
        image_size=None,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        head_dim=hidden_dim // 2,
        vision_encoder=None,
    )
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None, name=name)


def qwen3_lm(num_layers, hidden_dim, name, vocabulary_size):
    import keras_hub

    backbone = keras_hub.models.Qwen3Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        head_dim=hidden_dim // 2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
    )
    return keras_hub.models.Qwen3CausalLM(backbone=backbone, preprocessor=None, name=name)


def gpt2_lm(num_layers, hidden_dim, name, vocabulary_size, max_sequence_length=16):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_sequence_length=max_sequence_length,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, name=name)


def bert_classifier(num_layers, hidden_dim, name, vocabulary_size, num_classes=3, max_sequence_length=16):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_sequence_length=max_sequence_length,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=None, dropout=0.0, name=name
    )
