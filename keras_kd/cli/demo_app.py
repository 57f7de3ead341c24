"""The demo's former home, kept so that its imports still work: the demo is `keras_kd.demo`.

Here `run_demo` keeps the command line's default `output_dir`,
`saved_models/demo`.
"""

from keras_kd import demo
from keras_kd.cli.demo import DEFAULT_OUTPUT_DIR
from keras_kd.demo import (  # noqa: F401
    ALPHA,
    BATCH_SIZE,
    HIDDEN_UNITS,
    LATENCY_BATCH_SIZE,
    LEARNING_RATE,
    MAX_SHIFT,
    SHIFTED_COPIES,
    STUDENT_EPOCHS,
    TEACHER_BATCH_SIZE,
    TEACHER_EPOCHS,
    TEACHER_LEARNING_RATE,
    TEMPERATURE,
    TEST_FRACTION,
    ShuffledBatches,
    format_report,
    label_loss,
)


def run_demo(*args, output_dir=DEFAULT_OUTPUT_DIR, **kwargs):
    """`keras_kd.demo.run_demo`, writing to `saved_models/demo` unless `output_dir` says otherwise."""
    return demo.run_demo(*args, output_dir=output_dir, **kwargs)
