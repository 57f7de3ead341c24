"""What the subcommands share once Keras runs: a dataset split and a .keras model, as bad input or not."""

import os

from keras_kd.cli.errors import UsageError, one_line


def load_split(args, split):
    """The `(x, y)` arrays of `split` of `args.dataset` (first `args.limit` rows, if set).

    `args` holds the options of `keras_kd.cli.arguments.add_dataset_options`.

    Raises:
        UsageError: for an unknown or unavailable dataset.
    """
    from keras_kd import datasets

    try:
        x, y = datasets.load(args.dataset, split, data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(one_line(error)) from None
    limit = getattr(args, "limit", None)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def load_model(path, option):
    """Loads the .keras file `path` (safe mode); a UsageError if it cannot be read.

    Args:
        path: The file, already checked by `keras_kd.cli.arguments.check_model_file`.
        option: The option that named it, for the message.

    Raises:
        UsageError: if the file cannot be loaded, or holds a
            `keras_kd.Distiller` or something that is not a `keras.Model`.
    """
    import keras

    from keras_kd.distiller import Distiller  # Registers keras_kd's classes.

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Any failure to read a file is bad input here.
        raise UsageError(f"{option} {path!r} cannot be loaded: {type(error).__name__}: {one_line(error)}") from None
    if isinstance(model, Distiller):
        raise UsageError(
            f"{option} {path!r} holds a keras_kd.Distiller (teacher and student); give a "
            "plain model, such as the student that `keras-kd distill` writes"
        )
    if not isinstance(model, keras.Model):
        raise UsageError(f"{option} {path!r} holds a {type(model).__name__}, not a keras.Model")
    return model


def load_teachers(paths, option="--teacher"):
    """The teachers of the .keras files `paths`: one model, or a list of them for several files.

    Teachers saved by one script often share a name, which an ensemble's
    teachers may not: then each teacher is renamed after its file (`a.keras`
    becomes `a`), or after its place (`teacher_0`, ...) where the file names
    repeat too; renamed, it is a functional model over the same layers and
    weights.

    Raises:
        UsageError: as `load_model`, for each file.
    """
    teachers = [load_model(path, option) for path in paths]
    if len(teachers) == 1:
        return teachers[0]
    if len({teacher.name for teacher in teachers}) == len(teachers):
        return teachers
    import keras

    names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    if len(set(names)) < len(names):
        names = [f"teacher_{index}" for index in range(len(paths))]
    return [
        keras.Model(teacher.input, teacher.output, name=name) if getattr(teacher, "inputs", None) else teacher
        for name, teacher in zip(names, teachers)
    ]
