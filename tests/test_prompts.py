"""keras_kd.prompts.layout: prompt and response pairs in the layout of KerasHub's Gemma 3 preprocessor."""

import io

import keras
import numpy as np
import pytest

import hub_support
import keras_kd
from keras_kd.prompts import layout

keras_hub = pytest.importorskip("keras_hub")

START, END = 1, 2


def test_a_row_is_start_prompt_response_end_then_padding_split_into_inputs_and_next_tokens():
    x, y, sample_weight = layout(
        [[5, 6], [9], []], [[7], [3, 4, 5, 6, 7, 8], [10, 11]], 6, start_token_id=START, end_token_id=END
    )
    # Packed to 7 tokens: [1, 5, 6, 7, 2, 0, 0], [1, 9, 3, 4, 5, 6, 2] (response cut to 4), [1, 10, 11, 2, 0, 0, 0].
    np.testing.assert_array_equal(x["token_ids"], [[1, 5, 6, 7, 2, 0], [1, 9, 3, 4, 5, 6], [1, 10, 11, 2, 0, 0]])
    np.testing.assert_array_equal(y, [[5, 6, 7, 2, 0, 0], [9, 3, 4, 5, 6, 2], [10, 11, 2, 0, 0, 0]])
    np.testing.assert_array_equal(sample_weight, [[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(x["padding_mask"], [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    assert x["token_ids"].dtype == y.dtype == np.int32
    assert x["padding_mask"].dtype == bool and sample_weight.dtype == np.float32


@pytest.mark.parametrize("start_token_id", [None, START])
@pytest.mark.parametrize("end_token_id", [None, END])
def test_the_weighted_targets_are_the_response_then_the_end_token_for_random_rows(start_token_id, end_token_id):
    rng = np.random.default_rng(0)
    length = 12
    prompts = [rng.integers(3, 50, rng.integers(1, 8)) for _ in range(32)]
    responses = [list(rng.integers(3, 50, rng.integers(1, 15))) for _ in range(32)]
    x, y, sample_weight = layout(
        prompts, responses, length, start_token_id=start_token_id, end_token_id=end_token_id, pad_token_id=0
    )
    start = [] if start_token_id is None else [start_token_id]
    end = [] if end_token_id is None else [end_token_id]
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        kept = response[: length + 1 - len(start) - len(prompt) - len(end)]
        # y is x shifted by one token; the prompt comes before the first weighted target.
        np.testing.assert_array_equal(x["token_ids"][row, 1:], y[row, :-1])
        first = int(np.argmax(sample_weight[row] > 0))
        np.testing.assert_array_equal(x["token_ids"][row, : first + 1], start + list(prompt))
        np.testing.assert_array_equal(y[row][sample_weight[row] > 0], kept + end)
        assert sample_weight[row, first:].sum() == sample_weight[row].sum() == len(kept) + len(end)
        assert x["padding_mask"][row].sum() == min(len(start) + len(prompt) + len(kept) + len(end), length)


def test_explicit_special_tokens_win_over_the_tokenizers():
    def tokenize(text):
        return [ord(character) - ord("a") + 3 for character in text]

    tokenize.start_token_id, tokenize.end_token_id = START, END
    x, y, _ = layout(["ab"], ["c"], 5, tokenizer=tokenize)
    np.testing.assert_array_equal(x["token_ids"], [[1, 3, 4, 5, 2]])
    x, y, _ = layout(["ab"], ["c"], 5, tokenizer=tokenize, start_token_id=40, end_token_id=41)
    np.testing.assert_array_equal(x["token_ids"], [[40, 3, 4, 5, 41]])
    # Strings and id sequences mix: ids are used as they are.
    x, _, _ = layout(["ab"], [np.array([9])], 5, tokenizer=tokenize)
    np.testing.assert_array_equal(x["token_ids"], [[1, 3, 4, 9, 2]])


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(prompts=[[4]], responses=[[5], [6]]), ValueError, "1 prompts but 2 responses"),
        (dict(prompts=[], responses=[]), ValueError, "empty"),
        (dict(prompts=[[4], [4]], responses=[[5], []]), ValueError, r"responses\[1\] is empty"),
        (dict(prompts=[[4, 5, 6, 7, 8]], responses=[[5]]), ValueError, r"prompts\[0\] has 5 tokens.*sequence_length=6"),
        (dict(prompts=[[4]], responses=[[5.0]]), TypeError, r"responses\[0\].*integer token ids.*float64"),
        (dict(prompts=[[4, "a"]], responses=[[5]]), TypeError, r"prompts\[0\].*integer token ids"),
        (dict(prompts=[[True]], responses=[[5]]), TypeError, r"prompts\[0\].*bool"),
        (dict(prompts=[[[4]]], responses=[[5]]), TypeError, r"prompts\[0\].*1-D"),
        (dict(prompts=[[4, -3]], responses=[[5]]), ValueError, r"prompts\[0\] holds the token id -3"),
        (dict(prompts=[[4]], responses=[[2**31]]), ValueError, "2147483648"),
        (dict(prompts=["ab"], responses=[[5]]), TypeError, r"prompts\[0\] is the string 'ab'.*tokenizer="),
        (dict(prompts="ab", responses=["c"]), TypeError, "`prompts` must be a list.*'ab'"),
        (dict(prompts=[[4]], responses=5), TypeError, "`responses` must be a list.*5"),
        (dict(prompts=[[4]], responses=[[5]], sequence_length=1), ValueError, "sequence_length.*>= 2.*got 1"),
        (dict(prompts=[[4]], responses=[[5]], sequence_length=6.0), TypeError, r"sequence_length.*6\.0"),
        (dict(prompts=[[4]], responses=[[5]], start_token_id=-1), ValueError, "start_token_id.*-1"),
        (dict(prompts=[[4]], responses=[[5]], pad_token_id="0"), TypeError, "pad_token_id.*'0'"),
        (dict(prompts=[[4]], responses=[[5]], tokenizer="spm"), TypeError, "tokenizer.*'spm'"),
        (dict(prompts=[[]], responses=[[5]], start_token_id=None), ValueError, r"prompts\[0\] is empty.*start"),
    ],
)
def test_bad_input_is_refused_naming_the_value(arguments, error, message):
    arguments = {"sequence_length": 6, "start_token_id": START, "end_token_id": END, **arguments}
    with pytest.raises(error, match=message):
        layout(**arguments)


def test_the_longest_prompt_that_fits_leaves_one_response_token():
    x, y, sample_weight = layout([[4, 5, 6, 7]], [[8, 9]], 6, start_token_id=START, end_token_id=END)
    np.testing.assert_array_equal(x["token_ids"], [[1, 4, 5, 6, 7, 8]])
    np.testing.assert_array_equal(y[sample_weight > 0], [8, 2])


# --- Against KerasHub's own Gemma 3 preprocessor and a Gemma 3 model. ---------

SENTENCES = ["the quick brown fox jumped", "the lazy dog slept", "what is two plus two", "four"]


@pytest.fixture(scope="module")
def gemma3_tokenizer():
    """A Gemma 3 tokenizer on a SentencePiece vocabulary trained here (17 words and specials, nothing downloaded)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=proto,
        vocab_size=17,
        model_type="WORD",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        bos_piece="<bos>",
        eos_piece="<eos>",
        unk_piece="<unk>",
        minloglevel=3,
    )
    return keras_hub.models.Gemma3Tokenizer(proto=proto.getvalue(), has_vision_tokens=False)


def test_the_layout_is_what_gemma3s_preprocessor_yields(gemma3_tokenizer):
    prompts = ["the quick brown fox jumped", "what is", "the lazy dog", "the lazy dog slept"]
    # The second and fourth responses are cut to fit; each prompt fits whole, so KerasHub keeps it whole too.
    responses = ["four", "the lazy dog slept what is two", "slept", "the quick brown fox"]
    preprocessor = keras_hub.models.Gemma3CausalLMPreprocessor(tokenizer=gemma3_tokenizer, sequence_length=8)
    expected_x, expected_y, expected_weight = preprocessor({"prompts": prompts, "responses": responses})

    x, y, sample_weight = layout(prompts, responses, 8, tokenizer=gemma3_tokenizer)
    np.testing.assert_array_equal(x["token_ids"], keras.ops.convert_to_numpy(expected_x["token_ids"]))
    np.testing.assert_array_equal(x["padding_mask"], keras.ops.convert_to_numpy(expected_x["padding_mask"]))
    np.testing.assert_array_equal(y, keras.ops.convert_to_numpy(expected_y))
    np.testing.assert_array_equal(sample_weight, keras.ops.convert_to_numpy(expected_weight).astype("float32"))
    assert 0 < sample_weight.sum() < sample_weight.size and not x["padding_mask"].all()

    # The same from token ids, with the special tokens given.
    prompt_ids = [keras.ops.convert_to_numpy(gemma3_tokenizer(text)) for text in prompts]
    response_ids = [keras.ops.convert_to_numpy(gemma3_tokenizer(text)) for text in responses]
    from_ids = layout(prompt_ids, response_ids, 8, start_token_id=START, end_token_id=END)
    np.testing.assert_array_equal(from_ids[0]["token_ids"], x["token_ids"])
    np.testing.assert_array_equal(from_ids[2], sample_weight)

    # Where a long prompt does not fit with its response, KerasHub cuts both in turns; layout keeps the prompt.
    long_prompt = [["the quick brown fox jumped"], ["the lazy dog slept what is"]]
    kerashub_x, _, _ = preprocessor({"prompts": long_prompt[0], "responses": long_prompt[1]})
    x, _, _ = layout(*long_prompt, 8, tokenizer=gemma3_tokenizer)
    prompt_tokens = [START, *prompt_ids[0]]
    np.testing.assert_array_equal(x["token_ids"][0, :6], prompt_tokens)
    assert keras.ops.convert_to_numpy(kerashub_x["token_ids"])[0, :6].tolist() != prompt_tokens


def test_a_gemma3_causal_lm_distils_on_the_layout_and_only_the_responses_count(gemma3_tokenizer):
    vocabulary_size = gemma3_tokenizer.vocabulary_size()
    prompts = ["what is two plus two", "the lazy dog", "what is", "the quick brown fox"]
    responses = ["four", "slept", "two plus two", "jumped"]
    x, y, sample_weight = layout(prompts, responses, 8, tokenizer=gemma3_tokenizer)
    distiller = keras_kd.Distiller(
        hub_support.gemma3_lm(1, 16, "teacher", vocabulary_size),
        hub_support.gemma3_lm(1, 8, "student", vocabulary_size),
        alpha=0.5,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))

    logs = distiller.evaluate(x, y, sample_weight=sample_weight, batch_size=4, verbose=0, return_dict=True)
    prompt_targets = (sample_weight == 0) & x["padding_mask"]
    other_labels = np.where(prompt_targets, (y + 5) % vocabulary_size, y)
    changed = distiller.evaluate(
        x, other_labels, sample_weight=sample_weight, batch_size=4, verbose=0, return_dict=True
    )
    assert changed["loss"] == pytest.approx(logs["loss"], rel=1e-5)
    # The test can fail: weighing every real token, the changed prompt labels count.
    weigh_all = x["padding_mask"].astype("float32")
    all_logs = distiller.evaluate(x, y, sample_weight=weigh_all, batch_size=4, verbose=0, return_dict=True)
    all_changed = distiller.evaluate(
        x, other_labels, sample_weight=weigh_all, batch_size=4, verbose=0, return_dict=True
    )
    assert abs(all_changed["student_loss"] - all_logs["student_loss"]) > 1e-4

    before = [weight.copy() for weight in distiller.student.get_weights()]
    history = distiller.fit(x, y, sample_weight=sample_weight, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert any(not np.allclose(old, new) for old, new in zip(before, distiller.student.get_weights()))
