"""Tests of the relational losses: RKD distance and angle, and PKT, against the authors' batch values."""

import numpy as np
import pytest

from keras_kd import losses
from losses_support import (
    compute,
    feature_pair,
    numpy_pkt_matrix,
    numpy_rkd_angle_tensor,
    numpy_rkd_distance_matrix,
)

# --------------------------------------------------------------------------
# Batch-level losses (Park et al.; Passalis & Tefas)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, loss, authors_batch_value",
    [
        ("rkd", losses.rkd_distance, lambda t, s: numpy_rkd_distance_matrix(t, s).mean()),
        ("rkd", losses.rkd_angle, lambda t, s: numpy_rkd_angle_tensor(t, s).mean()),
        ("pkt", losses.pkt, lambda t, s: numpy_pkt_matrix(t, s).mean()),
    ],
)
def test_batch_level_losses_average_to_the_authors_batch_values(case, loss, authors_batch_value):
    teacher, student = feature_pair(case, seed=41)
    assert compute(loss, teacher, student).mean() == pytest.approx(authors_batch_value(teacher, student), rel=1e-4)


def test_relational_kd_without_angle_is_the_weighted_distance_loss():
    teacher, student = feature_pair("rkd", seed=48)
    loss = losses.RelationalKD(distance_weight=3.0, angle_weight=0.0)
    np.testing.assert_allclose(
        compute(loss, teacher, student), 3.0 * numpy_rkd_distance_matrix(teacher, student).mean(1), rtol=1e-4
    )
