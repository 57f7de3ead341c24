#!/usr/bin/env bash
# Prepares a bare GPU machine for `python -m bench --gpu-suite`.
#
# The GPU image has a CUDA torch and, usually, a CUDA JAX, but no Keras, no
# TensorFlow and no keras-tuner. The suite times torch and JAX only and
# imports none of keras_kd's optional parts (tuning, plots, datasets), so
# this installs Keras, JAX with CUDA where the image has none that sees the
# GPU, and keras_kd itself without its dependencies.
#
#   bash bench/gpu_setup.sh                  # from PyPI
#   bash bench/gpu_setup.sh --download DIR   # here, with PyPI: Keras's wheels (and the two of
#                                            # its dependencies the image lacks) for Python 3.12
#   bash bench/gpu_setup.sh DIR              # there, offline: install from those wheels
#
# Then, from the repository root: python3 -m bench --gpu-suite
# PYTHON (default python3) names the interpreter that holds the CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# The versions the test suite runs with (requirements/constraints.txt).
KERAS_WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)

if [ "${1:-}" = "--download" ]; then
  directory="${2:?usage: bench/gpu_setup.sh --download DIR}"
  platforms=()
  for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
  done
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$directory" "${KERAS_WHEELS[@]}"
  echo "Wheels in $directory; on the GPU machine: bash bench/gpu_setup.sh $directory"
  exit 0
fi

source_options=()
if [ $# -gt 0 ]; then
  source_options=(--no-index --find-links "$1")
fi
"$PYTHON" -m pip install --quiet "${source_options[@]}" "${KERAS_WHEELS[@]}"
if ! "$PYTHON" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet "${source_options[@]}" "jax[cuda12]"
fi
# keras_kd's declared dependencies (keras-tuner, tensorflow-datasets, ...) serve
# features the suite does not use; setuptools builds it without a download.
"$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .

"$PYTHON" - <<'EOF'
import importlib.metadata

import jax
import torch

assert torch.cuda.is_available(), "torch sees no GPU"
assert jax.default_backend() == "gpu", f"JAX runs on {jax.default_backend()!r}, not the GPU"
versions = {name: importlib.metadata.version(name) for name in ("keras", "keras_kd", "torch", "jax")}
print(f"Ready for python3 -m bench --gpu-suite on {torch.cuda.get_device_name(0)}: {versions}")
EOF
