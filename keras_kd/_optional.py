"""Optional dependencies: a missing one raises an ImportError naming its extra."""

import importlib

# Module -> (PyPI package, keras_kd extra that installs it).
_EXTRAS = {
    "keras_tuner": ("keras-tuner", "tuning"),
    "keras_hub": ("keras-hub", "hub"),
    "tensorflow_datasets": ("tensorflow-datasets", "datasets"),
    "mlxtend": ("mlxtend", "datasets"),
    "sklearn": ("scikit-learn", "datasets"),
    "matplotlib": ("matplotlib", "plots"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "tf2onnx": ("tf2onnx", "export"),
}


def import_optional(module, feature):
    """Imports `module`, or raises an ImportError that says how to install it.

    Args:
        module: the module's import name: a key of `_EXTRAS` or one of its
            submodules (e.g. "mlxtend.data").
        feature: what needs it, for the message (e.g. "keras_kd.tuning").
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package, extra = _EXTRAS[module.partition(".")[0]]
        raise ImportError(
            f"{feature} needs {package}, which is not installed. Install it with "
            f"`pip install 'keras_kd[{extra}]'` (or `pip install {package}`)."
        ) from error
