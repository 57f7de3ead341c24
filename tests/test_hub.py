"""KerasHub language models: a GPT-2 CausalLM distilled into a smaller one, built from configs (nothing downloaded)."""

import keras
import numpy as np
import pytest

import keras_kd

keras_hub = pytest.importorskip("keras_hub")

VOCAB, LENGTH, BATCH = 64, 16, 8


def causal_lm(num_layers, hidden_dim, name):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=LENGTH,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, name=name)


def lm_batch(seed=0):
    """KerasHub's inputs: token ids and a padding mask (right padding), next tokens as labels."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, (BATCH, LENGTH + 1)).astype("int32")
    lengths = rng.integers(4, LENGTH + 1, BATCH)
    padding_mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype("int32")
    x = {"token_ids": tokens[:, :LENGTH] * padding_mask, "padding_mask": padding_mask}
    return x, tokens[:, 1:] * padding_mask, padding_mask


def make_distiller():
    teacher, student = causal_lm(2, 32, "teacher"), causal_lm(1, 16, "student")
    distiller = keras_kd.Distiller(
        teacher, student, temperature=1.0, alpha=0.5, distillation_loss=keras_kd.losses.GeneralizedJSD(beta=0.5)
    )
    return distiller.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])


@pytest.mark.slow
def test_a_causal_lm_distils_into_a_smaller_one():
    distiller = make_distiller()
    assert distiller.student.count_params() * 4 < distiller.teacher.count_params()
    x, y, padding_mask = lm_batch()
    history = distiller.fit(x, y, sample_weight=padding_mask, batch_size=4, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert 0.0 <= history["teacher_agreement"][-1] <= 1.0


def test_padding_never_counts():
    distiller = make_distiller()
    x, y, padding_mask = lm_batch()
    logs = distiller.evaluate(x, y, sample_weight=padding_mask, batch_size=BATCH, verbose=0, return_dict=True)

    rng = np.random.default_rng(1)
    padded = padding_mask == 0
    assert padded.any()
    other_tokens = np.where(padded, rng.integers(1, VOCAB, padded.shape), x["token_ids"]).astype("int32")
    other_labels = np.where(padded, rng.integers(0, VOCAB, padded.shape), y)
    changed_x = {"token_ids": other_tokens, "padding_mask": padding_mask}
    changed = distiller.evaluate(
        changed_x, other_labels, sample_weight=padding_mask, batch_size=BATCH, verbose=0, return_dict=True
    )
    for name in ("loss", "distillation_loss", "student_loss", "accuracy", "teacher_agreement"):
        assert changed[name] == pytest.approx(logs[name], rel=1e-4, abs=1e-6), name

    # The test can fail: with nothing marked as padding the changes do count.
    unmasked = {"token_ids": other_tokens, "padding_mask": np.ones_like(padding_mask)}
    counted = distiller.evaluate(unmasked, other_labels, batch_size=BATCH, verbose=0, return_dict=True)
    assert abs(counted["loss"] - logs["loss"]) > 1e-5
