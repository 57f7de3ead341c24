"""On-policy distillation of KerasHub causal language models."""

import keras
import numpy as np
from keras import ops

from keras_kd import _optional, sampling
from keras_kd import losses as kd_losses
from keras_kd.distiller import Distiller

# Seeds the draw that decides whether a batch is sampled apart from the samplers' draws.
_COIN_SEED_OFFSET = 7919


@keras.saving.register_keras_serializable(package="keras_kd")
class OnPolicyDistiller(Distiller):
    """Distils a KerasHub `CausalLM` into a smaller one on the student's own samples.

    With probability `lmbda` per training batch, each row's response is
    replaced by one the student samples after the row's prompt, with its
    weights of that step, and the teacher scores every sampled token: the
    loss covers exactly the sampled tokens. Other batches are distilled on
    their own responses, as `keras_kd.Distiller` does (`lmbda=0` is the
    off-policy Distiller), or on responses the teacher samples with
    `seq_kd=True`. This is the on-policy distillation of GKD (Agarwal et al.,
    ICLR 2024), which TRL's `GKDTrainer` and `DistillationTrainer` ship.

    Data take the layout of KerasHub's Gemma 3 preprocessor
    (`keras_kd.prompts.layout` builds it for any family): `x =
    {"token_ids", "padding_mask"}` of `(batch, length)`, `y` the next tokens,
    and `sample_weight` marking the response targets (the end token
    included). The prompt of a row is what comes before its first weighted
    position. Sampling runs inside the train step through KerasHub's own
    sampler loop (`CausalLM.generate_step`) at the batch's fixed shape, so it
    compiles once; it stops at `max_new_tokens`, at a stop token, or at the
    end of the sequence. Draws depend only on `seed` and the step, so a run
    resumed by `keras.callbacks.BackupAndRestore` samples what the unbroken
    run sampled. Evaluation scores the data's own responses.

    The defaults follow the on-policy reports: reverse KL (`ReverseKL`,
    mode-seeking, MiniLLM and Thinking Machines' recipe; GKD found it and
    JSD best on-policy) at temperature 1 (the distributions the student
    samples from), with no hard-label term (`alpha=1`). With `alpha < 1` the
    hard-label term is cross-entropy on the batch's response tokens (the
    sampled ones on sampled batches).

    Args:
        teacher: A KerasHub `CausalLM` (frozen).
        student: A KerasHub `CausalLM` with the teacher's vocabulary.
        lmbda: Probability in [0, 1] that a training batch is sampled by
            the student.
        max_new_tokens: The most tokens sampled per row, a positive int
            (None: up to the end of the sequence).
        sampler: A `keras_hub.samplers.Sampler` that draws one token at a
            time, or its name (`"random"`, `"greedy"`, `"top_k"`,
            `"top_p"`); None samples from the student's distribution
            (`RandomSampler(temperature=1.0)`).
        seq_kd: True: batches the student does not sample get responses
            sampled by the teacher (sequence-level KD, GKD's `seq_kd`).
        stop_token_ids: Ids that end a response; None takes the student's
            tokenizer's end token when it has a preprocessor, else responses
            end at `max_new_tokens` or the end of the sequence.
        temperature: As for `Distiller`; defaults to 1.
        alpha: As for `Distiller`; defaults to 1 (the distillation term only).
        distillation_loss: A `keras_kd.losses.DistillationLoss`; defaults to
            `keras_kd.losses.ReverseKL()`.
        seed: Seed of the draws (an int; None draws one at construction).
        **kwargs: Other arguments of `Distiller` (`feature_matches`, `name`).

    Raises:
        TypeError: if teacher or student is not a KerasHub `CausalLM`.
        ValueError: for `lmbda` outside [0, 1], `max_new_tokens` < 1, a
            sampler with its own search loop, `augmentation` or `mixup`, or
            as `Distiller` (e.g. teacher and student with different
            vocabularies).

    Example:

    ```python
    # not run: builds two Llama 3 models; tests/test_on_policy.py runs this on every backend
    distiller = keras_kd.OnPolicyDistiller(teacher_lm, student_lm, lmbda=1.0, max_new_tokens=32, seed=0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-4))
    x, y, sample_weight = keras_kd.prompts.layout(prompts, responses, sequence_length=128, tokenizer=tokenizer)
    distiller.fit(x, y, sample_weight=sample_weight, batch_size=8, epochs=1)
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        *,
        lmbda=1.0,
        max_new_tokens=None,
        sampler=None,
        seq_kd=False,
        stop_token_ids=None,
        temperature=1.0,
        alpha=1.0,
        distillation_loss=None,
        seed=None,
        name="on_policy_distiller",
        **kwargs,
    ):
        _optional.import_optional("keras_hub", "keras_kd.OnPolicyDistiller")
        for role, model in (("teacher", teacher), ("student", student)):
            if not sampling.is_causal_lm(model):
                raise TypeError(
                    f"OnPolicyDistiller samples with KerasHub causal LMs; the {role} is "
                    f"{type(model).__name__}. Give a keras_hub.models.CausalLM (e.g. "
                    "Llama3CausalLM, Gemma3CausalLM) built with preprocessor=None or with one."
                )
        for refused in ("augmentation", "mixup"):
            if kwargs.get(refused):
                raise ValueError(
                    f"OnPolicyDistiller does not take {refused}={kwargs[refused]!r}: it rewrites the responses itself."
                )
        if distillation_loss is None:
            distillation_loss = kd_losses.ReverseKL()
        super().__init__(
            teacher,
            student,
            temperature=temperature,
            alpha=alpha,
            distillation_loss=distillation_loss,
            seed=seed,
            name=name,
            **kwargs,
        )
        self.lmbda = _probability(lmbda)
        self.max_new_tokens = _max_new_tokens(max_new_tokens)
        self.seq_kd = bool(seq_kd)
        self.sampler = sampling.get_sampler(sampler)
        self.stop_token_ids = _stop_token_ids(stop_token_ids, student)
        self._seed_value = int(np.random.default_rng().integers(1 << 30)) if seed is None else int(seed) % (1 << 30)
        self._bounded_sampler = sampling.bounded_sampler(self.sampler)
        if 0.0 < self.lmbda < 1.0:
            self._coin_seed = keras.random.SeedGenerator(self._seed_value, name="on_policy_coin")

    _UNTRACKED = Distiller._UNTRACKED | {"sampler", "_bounded_sampler", "_seed_value"}

    @property
    def transforms_inputs(self):
        """True: the responses of a training batch change at every step, so the teacher cannot be cached."""
        return True

    @property
    def input_transform_reason(self):
        return "it replaces the responses of training batches by sampled ones at every step"

    def check_training_batch(self, batch):
        """Raises for a first batch the sampler cannot use: no `sample_weight`, a row without response, no room."""
        if not batch.seen:
            return
        if batch.sample_weight is None:
            raise self._missing_responses_error()
        shape = tuple(batch.sample_weight.shape)
        if len(shape) != 2:
            raise ValueError(
                f"OnPolicyDistiller needs sample_weight of shape (batch, length) marking the response "
                f"tokens; got shape {shape}."
            )
        if isinstance(batch.sample_weight, np.ndarray) or hasattr(batch.sample_weight, "numpy"):
            weights = np.asarray(batch.sample_weight)
            empty = np.flatnonzero(~(weights > 0).any(axis=1))
            if empty.size:
                raise ValueError(
                    f"Row {int(empty[0])} of the batch has no response token (its sample_weight is 0 "
                    "everywhere): the prompt is what comes before the first weighted position, so every row "
                    "needs at least one."
                )
        length = shape[1]
        if length is not None and self.max_new_tokens is not None and self.max_new_tokens >= length:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} does not fit sequences of {length} tokens after a "
                f"prompt; give at most {length - 1}."
            )

    def prepare_batch(self, data, training):
        if training:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            x, y, sample_weight = self._with_sampled_responses(x, y, sample_weight)
            data = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return super().prepare_batch(data, training)

    def _with_sampled_responses(self, x, y, sample_weight):
        if sample_weight is None:
            raise self._missing_responses_error()
        step = self.optimizer.iterations
        length = ops.shape(x["token_ids"])[1]
        max_new_tokens = length if self.max_new_tokens is None else self.max_new_tokens
        sampling.reseed(self._bounded_sampler.variables, self._seed_value, step)

        def sampled_by(model):
            return lambda: sampling.sampled_batch(
                model, self._bounded_sampler, x, y, sample_weight, max_new_tokens, self.stop_token_ids
            )

        def own():
            return x, y, sample_weight

        off_policy = sampled_by(self.teacher) if self.seq_kd else own
        if self.lmbda == 1.0:
            return sampled_by(self.student)()
        if self.lmbda == 0.0:
            return off_policy()
        sampling.reseed([self._coin_seed.state], self._seed_value + _COIN_SEED_OFFSET, step)
        coin = keras.random.uniform((), seed=self._coin_seed)
        return ops.cond(coin < self.lmbda, sampled_by(self.student), off_policy)

    def _missing_responses_error(self):
        return ValueError(
            "OnPolicyDistiller needs sample_weight marking the response tokens of each row "
            "(keras_kd.prompts.layout returns it); got none."
        )

    def get_config(self):
        import keras_hub

        config = super().get_config()
        for key in ("augmentation", "mixup"):
            config.pop(key, None)
        config.update(
            {
                "lmbda": self.lmbda,
                "max_new_tokens": self.max_new_tokens,
                "sampler": keras_hub.samplers.serialize(self.sampler),
                "seq_kd": self.seq_kd,
                "stop_token_ids": None if self.stop_token_ids is None else list(self.stop_token_ids),
                "seed": self._seed_value,
            }
        )
        return config


def _probability(lmbda):
    if isinstance(lmbda, bool) or not isinstance(lmbda, (int, float, np.integer, np.floating)):
        raise TypeError(f"lmbda must be a number in [0, 1]; got {lmbda!r}.")
    if not 0.0 <= float(lmbda) <= 1.0:
        raise ValueError(
            f"lmbda={lmbda!r} is outside [0, 1]: it is the probability that a batch is sampled by the student."
        )
    return float(lmbda)


def _max_new_tokens(max_new_tokens):
    if max_new_tokens is None:
        return None
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
        raise TypeError(f"max_new_tokens must be a positive int or None; got {max_new_tokens!r}.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1.")
    return int(max_new_tokens)


def _stop_token_ids(stop_token_ids, student):
    if stop_token_ids is None:
        tokenizer = getattr(getattr(student, "preprocessor", None), "tokenizer", None)
        end = getattr(tokenizer, "end_token_id", None)
        return None if end is None else (int(end),)
    ids = (stop_token_ids,) if isinstance(stop_token_ids, (int, np.integer)) else tuple(stop_token_ids)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"stop_token_ids must be non-negative token ids; got {stop_token_ids!r}.")
    if sampling.PAD_TOKEN_ID in ids:
        raise ValueError(
            f"stop_token_ids={stop_token_ids!r} holds {sampling.PAD_TOKEN_ID}, the id that pads sampled "
            "responses; the end token must be another id."
        )
    return tuple(int(i) for i in ids)
