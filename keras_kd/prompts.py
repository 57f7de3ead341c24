"""Prompt and response pairs as a language model's training batch, for any KerasHub family.

KerasHub's Gemma 3 and PaliGemma preprocessors turn `{"prompts", "responses"}`
into `(x, y, sample_weight)`: `x = {"token_ids", "padding_mask"}`, `y` the next
tokens, and `sample_weight` 1 on the targets that are response tokens, so that
a loss covers the response only. KerasHub's generic `CausalLMPreprocessor`
(GPT-2, Llama 3, Qwen 3, ...) has no such form; `layout` builds the same arrays
from token ids, or from strings with a tokenizer, for a model of any family
built with `preprocessor=None`. A `keras_kd.Distiller` takes them as
`fit(x, y, sample_weight=sample_weight)`; the prompt of a row is what comes
before its first weighted target.
"""

import numbers

import numpy as np

__all__ = ["layout"]

_INT32_MAX = np.iinfo(np.int32).max


def layout(
    prompts, responses, sequence_length, *, tokenizer=None, start_token_id=None, end_token_id=None, pad_token_id=0
):
    """Packs prompts and responses into `(x, y, sample_weight)` as KerasHub's Gemma 3 preprocessor does.

    Each row is packed as `[start] + prompt + response + [end]`, padded on the
    right with `pad_token_id` to `sequence_length + 1` tokens, and split into
    the model's input (the first `sequence_length` tokens) and the targets
    (the last `sequence_length`), so that `y[:, i]` is the token that follows
    `x["token_ids"][:, i]`. `sample_weight` is 1 on the targets that are
    response tokens, the end token included, and 0 on the prompt, the start
    token and the padding.

    A response longer than the room left after its prompt is truncated to fit,
    and the end token is still appended after it, as KerasHub's packer does.
    The prompt itself is never truncated: a prompt that leaves no room for a
    response token is an error. The token ids, targets and weights are those
    of `keras_hub.models.Gemma3CausalLMPreprocessor` for the same tokens,
    except where a prompt and its response do not fit together and the prompt
    takes more than half the room, rounded up: KerasHub trims both in turns
    (round robin) and so cuts the prompt.

    `x["padding_mask"]` is True on the packed tokens (start, prompt, response,
    end) and False on the padding. KerasHub's preprocessor computes it as
    `token_ids != pad_token_id` instead; the two agree unless a prompt or
    response contains the pad id (GPT-2's tokenizer pads with 0, the id of
    `!`).

    Args:
        prompts: a list of prompts, one per row: each a sequence of token ids
            (a list or 1-D array of non-negative ints), or a string when
            `tokenizer` is given. A prompt may be empty when there is a start
            token.
        responses: a list of responses, one per prompt, in the same forms; a
            response must hold at least one token.
        sequence_length: the length `L` of `x["token_ids"]`, `y` and
            `sample_weight`; an int >= 2.
        tokenizer: what turns a string into token ids: any KerasHub tokenizer,
            or a callable taking one string and returning a 1-D sequence of
            ids. Strings are tokenized one at a time; id sequences are used as
            they are. Its `start_token_id` and `end_token_id` attributes, when
            present and not None, are the defaults of the two arguments below.
        start_token_id: the id put before each prompt; None for none (or the
            tokenizer's).
        end_token_id: the id put after each response; None for none (or the
            tokenizer's).
        pad_token_id: the id of the padding after each row (0 by default; the
            tokenizer's is not used, pass it here).

    Returns:
        `(x, y, sample_weight)`: `x` a dict with `"token_ids"` (int32) and
        `"padding_mask"` (bool), `y` (int32) and `sample_weight` (float32),
        each of shape `(rows, sequence_length)`.

    Raises:
        TypeError: `prompts` or `responses` is not a list of rows, a row holds
            something other than integer ids, a string comes without a
            tokenizer, or `tokenizer` is not callable.
        ValueError: a different number of prompts and responses, no rows, a
            negative id or one beyond int32, an empty response, a prompt that
            leaves no room for a response token (the error names the row, its
            length and `sequence_length`), a row with no token before its
            response (no start token and an empty prompt), or
            `sequence_length` < 2.

    Examples:

    >>> x, y, sample_weight = layout([[5, 6]], [[7]], sequence_length=6, start_token_id=1, end_token_id=2)
    >>> x["token_ids"]
    array([[1, 5, 6, 7, 2, 0]], dtype=int32)
    >>> x["padding_mask"]
    array([[ True,  True,  True,  True,  True, False]])
    >>> y
    array([[5, 6, 7, 2, 0, 0]], dtype=int32)
    >>> sample_weight
    array([[0., 0., 1., 1., 0., 0.]], dtype=float32)
    """
    sequence_length = _check_sequence_length(sequence_length)
    if tokenizer is not None and not callable(tokenizer):
        raise TypeError(
            f"`tokenizer` must be a KerasHub tokenizer or a callable mapping a string to token ids; "
            f"got {tokenizer!r} of type {type(tokenizer).__name__}."
        )
    if start_token_id is None:
        start_token_id = getattr(tokenizer, "start_token_id", None)
    if end_token_id is None:
        end_token_id = getattr(tokenizer, "end_token_id", None)
    start = [] if start_token_id is None else [_check_token_id("start_token_id", start_token_id)]
    end = [] if end_token_id is None else [_check_token_id("end_token_id", end_token_id)]
    pad_token_id = _check_token_id("pad_token_id", pad_token_id)

    prompts = _rows("prompts", prompts, tokenizer)
    responses = _rows("responses", responses, tokenizer)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; give one response per prompt.")
    if not prompts:
        raise ValueError("`prompts` and `responses` are empty; give at least one pair.")

    packed = np.full((len(prompts), sequence_length + 1), pad_token_id, dtype="int32")
    is_response = np.zeros(packed.shape, dtype=bool)
    lengths = np.zeros(len(prompts), dtype="int64")
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        if not len(response):
            raise ValueError(f"responses[{row}] is empty; each response needs at least one token.")
        head = len(start) + len(prompt)
        if head == 0:
            raise ValueError(
                f"prompts[{row}] is empty and there is no start token, so no token comes before the response "
                "and its first token could not be a target; give a non-empty prompt or a `start_token_id`."
            )
        room = sequence_length + 1 - head - len(end)
        if room < 1:
            raise ValueError(
                f"prompts[{row}] has {len(prompt)} tokens, which leaves no room for a response token in "
                f"sequence_length={sequence_length} (with {len(start)} start and {len(end)} end token); "
                f"prompts may have at most {sequence_length - len(start) - len(end)} tokens here."
            )
        tokens = np.concatenate([start, prompt, response[:room], end]).astype("int32")
        packed[row, : len(tokens)] = tokens
        is_response[row, head : len(tokens)] = True
        lengths[row] = len(tokens)

    x = {
        "token_ids": packed[:, :-1],
        "padding_mask": np.arange(sequence_length)[None, :] < lengths[:, None],
    }
    return x, packed[:, 1:], is_response[:, 1:].astype("float32")


def _check_sequence_length(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`sequence_length` must be an int >= 2; got {value!r} of type {type(value).__name__}.")
    if value < 2:
        raise ValueError(
            f"`sequence_length` must be >= 2 (one prompt position and one response target); got {value!r}."
        )
    return int(value)


def _check_token_id(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a non-negative int; got {value!r} of type {type(value).__name__}.")
    if not 0 <= value <= _INT32_MAX:
        raise ValueError(f"`{name}` must be in [0, {_INT32_MAX}]; got {value!r}.")
    return int(value)


def _rows(name, rows, tokenizer):
    """`rows` as a list of 1-D int64 arrays, strings tokenized; each bad row named by its index."""
    if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__len__") or not hasattr(rows, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list with one entry per row (token ids, or strings with a tokenizer); "
            f"got {type(rows).__name__}: {_preview(rows)}."
        )
    return [_ids(name, index, row, tokenizer) for index, row in enumerate(rows)]


def _ids(name, index, row, tokenizer):
    what = f"{name}[{index}]"
    if isinstance(row, str):
        if tokenizer is None:
            raise TypeError(f"{what} is the string {_preview(row)}; pass `tokenizer=` to tokenize strings.")
        row = tokenizer(row)
    try:
        ids = np.asarray(row)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} is not a sequence of token ids: {_preview(row)} ({error}).") from None
    if ids.size == 0 and ids.ndim == 1:
        return np.zeros((0,), dtype="int64")
    if ids.ndim != 1 or ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(
            f"{what} must be a 1-D sequence of integer token ids; got {_preview(row)} "
            f"(shape {ids.shape}, dtype {ids.dtype})."
        )
    bad = (ids < 0) | (ids > _INT32_MAX)
    if bad.any():
        raise ValueError(f"{what} holds the token id {ids[bad][0].item()!r}; token ids must be in [0, {_INT32_MAX}].")
    return ids.astype("int64")


def _preview(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
