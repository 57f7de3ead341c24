"""What a model's graph says about its inputs and outputs before it runs."""


def io_shapes(model):
    """`([input shapes], [output shapes])` of a functional or Sequential model, batch axis first; None if unknown.

    None for a subclassed model, or one without an `Input`, whose shapes are
    known only once it runs.
    """
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return [tuple(tensor.shape) for tensor in inputs], [tuple(tensor.shape) for tensor in outputs]
