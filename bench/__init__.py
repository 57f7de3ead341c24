"""The benchmark harness: `python -m bench --backend torch tensorflow jax`.

It times one epoch of the student alone, teacher inference, keras_kd's
Distiller (uncached and cached, logits and features), core Keras's
`keras.distillation.Distiller` and a hand-written PyTorch loop, on random
data, for three pairs (`bench.pairs`: two CNN pairs and an overhead-bound
MLP pair), and writes docs/results/benchmarks.md. `python -m bench
--gpu-suite` is the GPU matrix in one call (set a GPU machine up with
`bench/gpu_setup.sh`). `python -m bench --help` lists the options; `--smoke`
is a tiny run for the tests. The harness uses keras_kd's public names only.
"""
