"""`keras-kd export`: a .keras model as .keras, a TF SavedModel or ONNX, checked against Keras."""

from keras_kd import launch
from keras_kd.cli import arguments, loading
from keras_kd.cli.errors import UsageError, one_line


def add_parser(subparsers):
    """Declares `export` and its options."""
    parser = subparsers.add_parser(
        "export",
        help="export a .keras model as .keras, a TF SavedModel or ONNX, checked against Keras",
        description=(
            "Writes a model for deployment with keras_kd.export.export, then runs "
            "the artifact (Keras, TensorFlow or ONNX Runtime) on sample inputs and "
            "checks that its outputs match the Keras model's within --tolerance; "
            "nothing is written if they do not. SavedModel: tensorflow or jax "
            "backend; ONNX: tensorflow or torch backend."
        ),
    )
    arguments.add_backend_option(parser)
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH.keras",
        help="the model to export (e.g. a distilled student)",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=("keras", "saved_model", "onnx"),
        help=("keras: a .keras file; saved_model: a TensorFlow SavedModel directory; onnx: an .onnx file"),
    )
    parser.add_argument("--output", required=True, metavar="PATH", help="where the artifact goes")
    parser.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=("take the sample inputs of the check from this dataset's test split (default: uniform noise in [0, 1))"),
    )
    arguments.add_data_dir_option(parser)
    parser.add_argument(
        "--samples",
        type=launch.positive_int,
        default=16,
        help="number of sample inputs taken from --dataset (default: 16)",
    )
    parser.add_argument(
        "--tolerance",
        type=launch.positive_float,
        default=1e-4,
        help="largest absolute difference allowed between artifact and Keras outputs (default: 1e-4)",
    )
    parser.set_defaults(run=run)


def run(args):
    """Exports the model, checks the artifact and prints how closely it matches."""
    arguments.check_model_file(args.model, "--model")
    suffix = {"keras": ".keras", "onnx": ".onnx"}.get(args.format, "")
    arguments.check_output_file(args.output, suffix, "--output")
    arguments.select_backend(args.backend)
    from keras_kd import export

    sample_inputs = None
    if args.dataset is not None:
        sample_inputs = loading.load_split(args, "test")[0][: args.samples]
    model = loading.load_model(args.model, "--model")
    try:
        result = export.export(
            model,
            args.output,
            format=args.format,
            sample_inputs=sample_inputs,
            tolerance=args.tolerance,
        )
    except (TypeError, ValueError, ImportError) as error:
        raise UsageError(one_line(error)) from None
    print(
        f"Wrote {args.format} to {result.path}; its outputs match the Keras model's within "
        f"{result.max_abs_difference:.2e} (tolerance {args.tolerance:g})."
    )
