"""The benchmark harness of issue #4: `python -m bench --backend jax tensorflow torch`.

It times one epoch of the student alone, teacher inference, keras_kd's
Distiller (uncached and cached, logits and features), core Keras's
`keras.distillation.Distiller` and a hand-written PyTorch loop, on random
CIFAR-shaped data, and writes BENCHMARKS.md. `python -m bench --help` lists
the options; `--smoke` is a tiny run for the tests.
"""
