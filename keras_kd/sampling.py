"""Responses sampled inside a training step, in the prompt/response layout of KerasHub's causal LMs.

A batch in this layout (KerasHub's Gemma 3 preprocessor's, and
`keras_kd.prompts.layout`'s) is `x = {"token_ids", "padding_mask"}` of
`(batch, length)`, `y` the next tokens, and `sample_weight` marking the
response targets: `y[:, j]` is token `j + 1`, so the prompt of a row is its
tokens before position `first weighted index + 1`.

`sampled_batch` keeps each row's prompt, lets a KerasHub `CausalLM` sample a
new response after it with KerasHub's own sampler loop (`generate_step`),
and returns the batch rewritten in the same layout with the sampled tokens
as its responses. It is written in `keras.ops`, so it runs inside a compiled
train step on every backend, at fixed shapes (nothing recompiles from one
batch to the next).
"""

import contextlib

from keras import ops

# The id that fills positions after a response (masked out of every term).
PAD_TOKEN_ID = 0
# The samplers whose draws `BoundedSampler` can wrap: those that use the
# base `keras_hub.samplers.Sampler` loop (beam and contrastive search have
# their own loops and would not stop at `max_new_tokens`).
SAMPLER_NAMES = ("random", "greedy", "top_k", "top_p")


def prompt_lengths(sample_weight):
    """The number of prompt tokens of each row, `(batch,)` int32.

    One more than the index of the row's first weighted target; the whole
    row (`length`) for a row with no weighted target, which then has no room
    to sample.
    """
    length = ops.shape(sample_weight)[1]
    positions = ops.arange(length, dtype="int32")[None, :]
    first_weighted = ops.min(ops.where(sample_weight > 0, positions, length), axis=1)
    return ops.minimum(first_weighted + 1, length)


def get_sampler(sampler):
    """A KerasHub sampler from a name, a config or an instance; None gives pure sampling at temperature 1.

    Raises:
        ValueError: for a sampler with a loop of its own (beam search,
            contrastive search), or an unknown name.
    """
    import keras_hub

    if sampler is None:
        return keras_hub.samplers.RandomSampler(temperature=1.0)
    if isinstance(sampler, str) and sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler={sampler!r} is not one of {list(SAMPLER_NAMES)} (or a keras_hub sampler).")
    sampler = keras_hub.samplers.get(sampler)
    if type(sampler).__call__ is not keras_hub.samplers.Sampler.__call__:
        raise ValueError(
            f"sampler={type(sampler).__name__} runs a search loop of its own, which cannot stop after "
            f"max_new_tokens; use one of {list(SAMPLER_NAMES)} or another keras_hub sampler that draws "
            "one token at a time."
        )
    return sampler


def bounded_sampler(sampler):
    """A `keras_hub.samplers.Sampler` that draws as `sampler` does and stops its loop at an index.

    Set its `limit` (a scalar tensor) before each generation: the loop
    samples the positions before it. `variables` are `sampler`'s (its seed
    state), so KerasHub's loop threads them through JAX's stateless loop.
    """
    import keras_hub

    class BoundedSampler(keras_hub.samplers.Sampler):
        def __init__(self, sampler):
            super().__init__(temperature=sampler.temperature)
            self.sampler = sampler
            self.limit = None

        @property
        def variables(self):
            return self.sampler.variables

        def compute_probabilities(self, logits):
            return self.sampler.compute_probabilities(logits)

        def get_next_token(self, probabilities):
            return self.sampler.get_next_token(probabilities)

        def run_loop(self, cond, body, model=None, loop_vars=None, maximum_iterations=None):
            limit = self.limit

            def bounded_cond(prompt, cache, index, mask):
                return ops.logical_and(cond(prompt, cache, index, mask), index < limit)

            return super().run_loop(
                bounded_cond, body, model=model, loop_vars=loop_vars, maximum_iterations=maximum_iterations
            )

    return BoundedSampler(sampler)


def reseed(states, seed, step):
    """Sets seed states (of `keras.random.SeedGenerator`s) from `(seed, step)`.

    The draws of a step then depend on the step alone, so a run resumed at
    step `n` samples what the unbroken run sampled there.
    """
    for index, state in enumerate(states):
        # Draws within a step advance the second word by one per token.
        value = ops.stack([ops.convert_to_tensor(seed + index, state.dtype), ops.cast(step, state.dtype) * (1 << 16)])
        state.assign(value)


def sampled_batch(model, sampler, x, y, sample_weight, max_new_tokens, stop_token_ids):
    """The batch with each row's response replaced by one `model` samples after its prompt.

    Args:
        model: A KerasHub `CausalLM` (it samples with `generate_step`).
        sampler: A `bounded_sampler`, seeded for this step.
        x: `{"token_ids", "padding_mask", ...}` of `(batch, length)`.
        y: The next tokens `(batch, length)`, or None.
        sample_weight: `(batch, length)`, positive on the response targets.
        max_new_tokens: The most tokens sampled per row (a Python int).
        stop_token_ids: Ids that end a response (kept in it), or None.

    Returns:
        `(x, y, sample_weight)` in the same layout, dtypes and shapes: the
        prompt, then the sampled tokens up to and including the first stop
        token or `max_new_tokens` of them, then padding. `sample_weight` is
        1 on exactly the sampled tokens' targets; `y` is None if it was.
    """
    token_ids = x["token_ids"]
    length = ops.shape(token_ids)[1]
    positions = ops.arange(length, dtype="int32")[None, :]
    prompt_length = prompt_lengths(sample_weight)[:, None]
    in_prompt = positions < prompt_length
    prompt_ids = ops.where(in_prompt, token_ids, ops.cast(PAD_TOKEN_ID, token_ids.dtype))
    sampler.limit = ops.minimum(ops.max(prompt_length) + max_new_tokens, length)
    with _sampling_with(model, sampler):
        generated = model.generate_step(
            {"token_ids": prompt_ids, "padding_mask": in_prompt},
            stop_token_ids=None if stop_token_ids is None else tuple(stop_token_ids),
        )["token_ids"]
    response = ops.logical_and(ops.logical_not(in_prompt), positions < prompt_length + max_new_tokens)
    if stop_token_ids:
        is_stop = ops.any(ops.equal(generated[..., None], ops.convert_to_tensor(stop_token_ids, generated.dtype)), -1)
        is_stop = ops.cast(ops.logical_and(is_stop, response), "int32")
        # Positions after a row's first stop token.
        after_stop = (ops.cumsum(is_stop, axis=1) - is_stop) > 0
        response = ops.logical_and(response, ops.logical_not(after_stop))
    kept = ops.logical_or(in_prompt, response)
    new_ids = ops.where(kept, ops.cast(generated, token_ids.dtype), ops.cast(PAD_TOKEN_ID, token_ids.dtype))
    new_x = dict(x)
    new_x["token_ids"] = new_ids
    new_x["padding_mask"] = ops.cast(kept, x["padding_mask"].dtype)
    # y[:, j] is token j + 1; nothing follows the last position.
    next_ids = ops.pad(new_ids[:, 1:], [[0, 0], [0, 1]], constant_values=PAD_TOKEN_ID)
    new_y = None if y is None else ops.cast(next_ids, y.dtype)
    targets = ops.pad(ops.cast(response[:, 1:], sample_weight.dtype), [[0, 0], [0, 1]])
    return new_x, new_y, targets


@contextlib.contextmanager
def _sampling_with(model, sampler):
    """`model.generate_step` draws with `sampler` inside the block; the model's own sampler is put back."""
    had_sampler = "sampler" in vars(model)
    previous = vars(model).get("sampler")
    object.__setattr__(model, "sampler", sampler)
    try:
        yield
    finally:
        if had_sampler:
            object.__setattr__(model, "sampler", previous)
        else:
            object.__delattr__(model, "sampler")


def is_causal_lm(model):
    """Whether `model` is a KerasHub `CausalLM` (it can sample with `generate_step`)."""
    try:
        import keras_hub
    except ImportError:
        return False
    return isinstance(model, keras_hub.models.CausalLM)
