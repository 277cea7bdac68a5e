"""Sentiment model and Lightning module: padding never changes a prediction (float64, every pooling,
uni and bi, every encoder), pooling semantics, metrics, predictions, reports, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONFIG_DIR
from rnnlab.tasks.contract import TaskDataModule, TaskModule
from rnnlab.tasks.sentiment import SentimentDataModule, SentimentModule
from rnnlab.tasks.sentiment.model import POOLINGS, Pooling
from rnnlab.tasks.sentiment.report import Mistake, confusion_image, mistakes_markdown
from rnnlab.data.text import pad_batch
from rnnlab.utils.errors import UserError
from test_sentiment_data import make_reviews, write_csv

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


VOCAB = ["<pad>", "<unk>"] + [f"w{i}" for i in range(30)]
LABELS = ["negative", "neutral", "positive"]


def training_step(module: SentimentModule, batch, seed: int) -> torch.Tensor:
    """module.training_step(batch) outside a Trainer (an SGD optimizer stands in, logging is off), its
    random draws from torch.manual_seed(seed)."""
    module.trainer = type("T", (), {"optimizers": [torch.optim.SGD(module.parameters(), lr=0.1)]})()
    module.log = lambda *a, **k: None
    torch.manual_seed(seed)
    return module.training_step(batch, 0)


def tiny_module(cell: str = "lstm", layer: str = "rnnlab", bidirectional: bool = False, num_layers: int = 2, **kwargs) -> SentimentModule:
    model = {"layer": layer, "cell": cell, "hidden_size": 7, "num_layers": num_layers, "bidirectional": bidirectional}
    return SentimentModule(vocab=VOCAB, labels=LABELS, model=model, embedding_dim=5, **kwargs)


ENCODERS = [
    pytest.param(dict(cell="lstm"), id="lstm"),
    pytest.param(dict(cell="gru", num_layers=1), id="gru"),
    pytest.param(dict(cell="rnn"), id="rnn"),
    pytest.param(dict(cell="layernorm_lstm", num_layers=1), id="layernorm_lstm"),
    pytest.param(dict(cell="gru", num_layers=1, ensemble=2), id="gru_ensemble"),
    pytest.param(dict(cell="gru", num_layers=1, ensemble=[{}, {"cell": "lstm", "hidden_size": 3}, {"bidirectional": False, "pooling": "attention"}]), id="mixed_ensemble"),
    pytest.param(dict(cell="lstm", layer="torch"), id="torch_lstm"),
]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_padding_never_changes_a_prediction(encoder: dict, pooling: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    module = tiny_module(**encoder, bidirectional=bidirectional, pooling=pooling).double().eval()
    sentence = [5, 9, 2, 17]
    longer = [[3, 4, 8, 11, 12, 13, 20, 2, 9], [7] * 12, [30, 31, 2, 2, 6, 6]]
    alone = module(*pad_batch([sentence]))
    for position in range(len(longer) + 1):  # the sentence anywhere in a batch of longer ones
        batch = longer[:position] + [sentence] + longer[position:]
        together = module(*pad_batch(batch))[position]
        torch.testing.assert_close(together, alone[0], atol=1e-10, rtol=0)
    if pooling in ("last", "mean"):  # the padding read as words changes these (max may keep its maxima): the test can fail
        x, lengths = pad_batch([sentence, longer[1]])
        assert not torch.allclose(module(x, torch.full_like(lengths, x.size(1)))[0], alone[0], atol=1e-6)


@pytest.mark.parametrize("buckets", [0, 97])
def test_bag_baseline_ignores_padding_too(buckets: int) -> None:
    torch.manual_seed(0)
    module = tiny_module(encoder="bag", bigram_buckets=buckets).double().eval()
    alone = module(*pad_batch([[5, 9, 2]]))
    together = module(*pad_batch([[3, 4, 8, 11, 12, 13], [5, 9, 2], [7]]))[1]
    torch.testing.assert_close(together, alone[0], atol=1e-10, rtol=0)
    if buckets:  # bigrams see word order; words alone do not
        assert not torch.allclose(module(*pad_batch([[9, 5, 2]])), alone)
    else:
        torch.testing.assert_close(module(*pad_batch([[9, 5, 2]])), alone, atol=1e-12, rtol=0)


def test_bag_is_the_mean_of_word_and_bigram_embeddings() -> None:
    torch.manual_seed(0)
    module = tiny_module(encoder="bag", bigram_buckets=97).double()
    x, lengths = pad_batch([[5, 9, 2]])
    bag = module.net.encoder
    emb = module.net.embed(x)
    bigrams = bag.bigrams(torch.tensor([[(5 * 1_000_003 + 9) % 97, (9 * 1_000_003 + 2) % 97]]))
    expected = (emb.sum(1) + bigrams.sum(1)) / 5  # 3 words + 2 bigrams
    torch.testing.assert_close(bag(x, emb, lengths), expected)


def test_last_pooling_is_each_directions_final_state() -> None:
    torch.manual_seed(0)
    module = tiny_module("gru", bidirectional=True, pooling="last").double()
    rnn = module.net.encoder.rnn
    x, lengths = pad_batch([[5, 9, 2, 4], [7, 3]])
    out, h = rnn(module.net.embed(x), lengths=lengths)
    pooled = module.net.encoder.pool(out, lengths)
    torch.testing.assert_close(pooled, torch.cat([h[-2], h[-1]], 1))  # top layer: forward, backward


def test_masked_poolings_by_hand() -> None:
    out = torch.tensor([[[1.0, -2.0], [3.0, -4.0], [0.0, 0.0]]])  # one sentence of 2 steps, padded to 3
    lengths = torch.tensor([2])
    assert Pooling("mean", 2)(out, lengths).tolist() == [[2.0, -3.0]]
    assert Pooling("max", 2)(out, lengths).tolist() == [[3.0, -2.0]]  # not 0 from the padding
    assert Pooling("last", 2)(out, lengths).tolist() == [[3.0, -4.0]]
    attention = Pooling("attention", 2)
    weights = attention.score(out).squeeze(2)[:, :2].softmax(1)
    torch.testing.assert_close(attention(out, lengths), (weights[..., None] * out[:, :2]).sum(1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(encoder="cnn"), r"^task.module.encoder='cnn': must be one of \('rnn', 'bag'\)"),
        (dict(pooling="sum"), r"^task.module.pooling='sum': must be one of \('last', 'mean', 'max', 'attention'\)"),
        (dict(embedding_dim=0), r"^task.module.embedding_dim=0: must be a positive integer"),
        (dict(dropout=1.0), r"^task.module.dropout=1.0: must be a number in \[0, 1\)"),
        (dict(bigram_buckets=-1), r"^task.module.bigram_buckets=-1: must be a non-negative integer"),
        (dict(model={"layer": "rnnlab", "cell": "lstm", "hidden_size": 0}), r"^model.hidden_size=0: Recurrent: hidden_size must be a positive integer"),
        (dict(optimizer={"name": "adam", "lr": -1}), r"^task.module.optimizer.lr=-1: the learning rate must be a positive finite number"),
        (dict(labels=["only"]), r"^labels=\['only'\]: a classifier needs at least two distinct class names"),
        (dict(ensemble=0), r"^task.module.ensemble=0: must be a positive integer .* or a list of members"),
        (dict(ensemble=[{}, "gru"]), r"^task.module.ensemble=\[\{\}, 'gru'\]: must be .* a list of members"),
        (dict(ensemble=[{}, {"pooling": "sum"}]), r"^task.module.ensemble\[1\].pooling='sum': must be one of"),
        (dict(ensemble=[{}, {"hidden_size": 0}]), r"^task.module.ensemble\[1\].hidden_size=0: Recurrent: hidden_size must be a positive integer"),
        (dict(word_dropout=-0.1), r"^task.module.word_dropout=-0.1: must be a number in \[0, 1\)"),
        (dict(lm_weight="yes"), r"^task.module.lm_weight='yes': must be a non-negative number"),
        (dict(lm_weight=1.0, lm_vocab=1), r"^task.module.lm_vocab=1: must be an integer >= 2"),
    ],
)
def test_bad_module_settings(kwargs: dict, message: str) -> None:
    base = dict(vocab=VOCAB, labels=LABELS, model={"layer": "rnnlab", "cell": "gru", "hidden_size": 4})
    with pytest.raises(UserError, match=message):
        SentimentModule(**{**base, **kwargs})


def test_predict_text_gives_label_and_probability() -> None:
    torch.manual_seed(0)
    module = SentimentModule(vocab=["<pad>", "<unk>", "a", "gripping", ",", "funny", "film", "dull"], labels=LABELS,
                             model={"layer": "rnnlab", "cell": "lstm", "hidden_size": 6})
    inputs = ["A gripping, funny film", "dull", "Unseen words only!", "film film film film film film"]
    lines = module.predict_text(inputs)
    probs = module.predict_proba(inputs)
    assert probs.shape == (4, 3) and torch.allclose(probs.sum(1), torch.ones(4))
    for line, row in zip(lines, probs):
        label, p = line.split("\t")
        assert label == LABELS[int(row.argmax())] and p == f"{float(row.max()):.3f}"
    assert module.predict_text(inputs, batch_size=1) == lines  # batching and its padding change nothing
    full = module.predict_text(inputs[:1], all_labels=True)[0].split("\t")
    assert full[:2] == lines[0].split("\t") and full[2].split() == [f"{n}={float(q):.3f}" for n, q in zip(LABELS, probs[0])]
    assert module.training  # left as it was
    with pytest.raises(UserError, match=r"input 2 \('  '\) has no tokens: nothing to classify"):
        module.predict_text(["film", "  "])


def test_confusion_image_and_mistakes_table() -> None:
    image = confusion_image(torch.tensor([[5, 1, 0], [2, 7, 1], [0, 0, 9]]), LABELS, "val")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    table = mistakes_markdown([Mistake(("a", "<unk>", "|", "film"), "negative", "positive", 0.91)])
    assert table.splitlines()[-1] == "| negative | positive (0.91) | a &lt;unk&gt; \\| film |"


def test_meets_the_contract_and_round_trips_a_checkpoint(tmp_path: Path) -> None:
    dm = SentimentDataModule(path=str(write_csv(tmp_path / "d.csv", make_reviews(80))), batch_size=8)
    dm.setup()
    module = SentimentModule(model={"layer": "torch", "cell": "gru", "hidden_size": 6, "bidirectional": True}, pooling="attention", embedding_dim=4, **dm.model_kwargs())
    assert isinstance(dm, TaskDataModule) and isinstance(module, TaskModule)
    trainer = L.Trainer(max_steps=3, limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), filename="m")])
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "ckpt" / "m.ckpt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain values only
    assert stored["rnnlab_task"] == "sentiment" and stored["hyper_parameters"]["labels"] == ["neg", "pos"]
    restored = SentimentModule.from_checkpoint(ckpt)
    assert not restored.training and restored.datamodule_kwargs()["label_names"] == ["neg", "pos"]
    inputs = ["a good film , really !", "boring plot"]
    assert restored.predict_text(inputs) == module.eval().predict_text(inputs)


def test_validation_metrics_are_accuracy_and_macro_f1(tmp_path: Path) -> None:
    dm = SentimentDataModule(path=str(write_csv(tmp_path / "d.csv", make_reviews(100))), batch_size=8, eval_batch_size=3)
    dm.setup()
    torch.manual_seed(0)
    module = SentimentModule(model={"layer": "rnnlab", "cell": "gru", "hidden_size": 5}, embedding_dim=4, **dm.model_kwargs())
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    (result,) = trainer.validate(module, datamodule=dm, verbose=False)
    batches = [dm.splits["val"][list(range(len(dm.splits["val"])))]]
    lengths, x, y = batches[0]
    with torch.no_grad():
        logits = module.eval()(x, lengths)
    pred = logits.argmax(1)
    f1 = []
    for c in range(2):
        tp, fp, fn = ((pred == c) & (y == c)).sum(), ((pred == c) & (y != c)).sum(), ((pred != c) & (y == c)).sum()
        f1.append(float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0)
    assert result["val/acc"] == pytest.approx(float((pred == y).float().mean()), abs=1e-6)
    assert result["val/f1"] == pytest.approx(sum(f1) / 2, abs=1e-6)
    assert result["val/loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), abs=1e-5)  # a mean over sentences
    assert SentimentModule.monitor == ("val/acc", "max")


def test_config_predict_options_are_the_defaults() -> None:
    # predict.py without task= runs a sentiment checkpoint with predict_text's defaults: they must be the config's.
    import inspect

    cfg = OmegaConf.load(CONFIG_DIR / "task" / "sentiment.yaml")
    defaults = {k: p.default for k, p in inspect.signature(SentimentModule.predict_text).parameters.items() if k != "inputs" and k != "self"}
    assert OmegaConf.to_container(cfg.predict) == defaults


def _vector_file(path: Path, rows: dict[str, list[float]], header: bool = False) -> Path:
    lines = [f"{len(rows)} 5"] if header else []
    lines += [word + " " + " ".join(f"{v:.4f}" for v in vec) for word, vec in rows.items()]
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, header", [("glove.txt", False), ("word2vec.txt.gz", True)])
def test_pretrained_vectors_start_the_embeddings(tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, header: bool) -> None:
    """Rows of found words (as spelled, else lower-cased; the vocabulary's spelling wins) take the
    file's vectors, the rest keep their init, padding stays zero, the share found is logged."""
    rows = {"W3": [1, 2, 3, 4, 5], "w4": [0.5] * 5, "W5": [9] * 5, "w5": [-1] * 5, "<pad>": [7] * 5, "absent": [3] * 5}
    path = _vector_file(tmp_path / name, rows, header)
    torch.manual_seed(0)
    module = tiny_module(embeddings={"path": str(path), "freeze": True})
    before = module.net.embed.weight.detach().clone()
    with caplog.at_level("INFO"):
        module.setup("fit")
    weight = module.net.embed.weight.detach()
    assert torch.equal(weight[VOCAB.index("w3")], torch.tensor(rows["W3"], dtype=torch.float32))
    assert torch.equal(weight[VOCAB.index("w4")], torch.full((5,), 0.5))
    assert torch.equal(weight[VOCAB.index("w5")], torch.full((5,), -1.0))  # its own spelling, not W5's
    assert torch.equal(weight[0], torch.zeros(5))
    untouched = [i for i, w in enumerate(VOCAB) if w not in ("w3", "w4", "w5", "<pad>")]
    assert torch.equal(weight[untouched], before[untouched])
    assert module.embeddings_found == 3 / len(VOCAB)
    assert f"3 of {len(VOCAB)} vocabulary words (9.4%) found" in caplog.text
    assert not module.net.embed.weight.requires_grad  # freeze
    assert tiny_module(embeddings={"path": str(path), "freeze": False}).net.embed.weight.requires_grad
    path.unlink()  # evaluation and prediction never read the file
    module.setup("validate")
    module.setup("predict")


@pytest.mark.parametrize("case, content, message", [
    ("missing", None, r"task\.embeddings\.path=.*missing\.txt: no such file"),
    ("short", b"w3 1 2 3 4 5\nw4 1 2 3\n", r"missing\.txt, line 2: expected a word and 5 numbers, got 3 .*embedding_dim=5"),
    ("text", b"w3 1 2 x 4 5\n", r"line 1: could not convert string to float: 'x'"),
    ("latin1", b"w3 1 2 3 4 5\ncaf\xe9 1 2 3 4 5\n", r"line 2 is not UTF-8"),
    ("empty", b"\n", r"holds no word vectors"),
])
def test_bad_vector_files_are_named_with_their_line(tmp_path: Path, case: str, content: bytes | None, message: str) -> None:
    path = tmp_path / "missing.txt"
    if content is not None:
        path.write_bytes(content)
    module = tiny_module(embeddings={"path": str(path)})
    with pytest.raises(UserError, match=message):
        module.setup("fit")


@pytest.mark.parametrize("value, message", [({"path": 3}, r"task\.embeddings\.path=3"), ({"freeze": "yes"}, r"task\.embeddings\.freeze='yes'"),
                                            ({"file": "a.txt"}, r"task\.embeddings=\{'file'")])
def test_bad_embeddings_settings_are_named(value: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        tiny_module(embeddings=value)


def test_an_ensemble_averages_its_members_probabilities() -> None:
    torch.manual_seed(0)
    module = tiny_module(ensemble=3).double()
    members = module.net.members
    assert len(members) == 3 and not torch.equal(members[0].embed.weight, members[1].embed.weight)  # own initialisations
    x, lengths = pad_batch([[5, 9, 2], [7, 3, 3, 4, 11]])
    probs = torch.stack([m(x, lengths).softmax(1) for m in members]).mean(0)
    torch.testing.assert_close(module(x, lengths).softmax(1), probs, atol=1e-12, rtol=0)
    assert module.predict_proba(["w5 w9", "w1"]).shape == (2, 3)
    with pytest.raises(UserError, match=r"task\.module\.ensemble=0: must be a positive integer"):
        tiny_module(ensemble=0)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_auxiliary_language_model_predicts_each_directions_next_word(bidirectional: bool) -> None:
    """The LM loss equals a loop over sentences and positions: the forward direction's output at t
    scored against word t+1, the backward one's against word t-1, rare words (ids >= lm_vocab) as
    <unk>, padding never scored (float64, three sentences of different lengths)."""
    torch.manual_seed(0)
    module = tiny_module(cell="gru", bidirectional=bidirectional, num_layers=1, lm_weight=0.5, lm_vocab=20).double().eval()
    net = module.net
    sentences = [[5, 9, 2, 17, 25], [3, 28], [7, 30, 12, 8, 9, 4, 22]]
    x, lengths = pad_batch(sentences)
    logits, lm_loss = net.forward_lm(x, lengths)
    torch.testing.assert_close(logits, module(x, lengths), atol=1e-12, rtol=0)  # the same pass as forward
    H, E = 7, net.embed.weight[:20]
    losses = []
    for s in sentences:
        out = net.encoder.outputs(net.embed(torch.tensor([s])), torch.tensor([len(s)]))[0]  # (T, D·H), alone
        target = [w if w < 20 else 1 for w in s]
        for t in range(len(s)):
            for d, neighbour in enumerate((t + 1, t - 1)[: 2 if bidirectional else 1]):
                if 0 <= neighbour < len(s):
                    scores = net.lm.proj[d](out[t, d * H : (d + 1) * H]) @ E.T + net.lm.bias
                    losses.append(-scores.log_softmax(0)[target[neighbour]])
    torch.testing.assert_close(lm_loss, torch.stack(losses).mean(), atol=1e-12, rtol=0)


def test_training_loss_adds_the_weighted_language_model_loss() -> None:
    torch.manual_seed(0)
    module = tiny_module(cell="lstm", bidirectional=True, num_layers=1, lm_weight=0.25).double().train()
    x, lengths = pad_batch([[5, 9, 2, 17], [3, 4, 8]])
    y = torch.tensor([0, 2])
    loss = training_step(module, (lengths, x, y), seed=1)
    torch.manual_seed(1)  # the same dropout draws
    logits, lm_loss = module.net.forward_lm(x, lengths)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, y) + 0.25 * lm_loss, atol=1e-12, rtol=0)
    with pytest.raises(UserError, match=r"task\.module\.lm_weight=0\.5.*encoder='bag'"):
        tiny_module(encoder="bag", lm_weight=0.5)


def test_word_dropout_hides_real_words_in_training_only() -> None:
    torch.manual_seed(0)
    module = tiny_module(cell="gru", num_layers=1, word_dropout=0.3)
    net = module.net
    x, lengths = pad_batch([list(range(2, 32)) * 20, [5, 6, 7]])
    net.eval()
    assert torch.equal(net.drop_words(x), x)  # evaluation reads every word
    net.train()
    dropped = net.drop_words(x)
    real = x != 0
    assert torch.equal(dropped[~real], x[~real])  # padding stays padding
    changed = dropped[real] != x[real]
    assert torch.all(dropped[real][changed] == 1)  # a hidden word reads as <unk>
    assert abs(changed.float().mean().item() - 0.3) < 0.05  # 603 words: 0.3 within about 2.5 standard errors
    torch.manual_seed(5)
    logits = net(x, lengths)
    torch.manual_seed(5)
    hidden = net.drop_words(x)  # forward draws the same mask first, then classifies what is left
    net.word_dropout = 0.0
    torch.testing.assert_close(logits, net(hidden, lengths))


def test_a_mixed_ensemble_builds_each_member_as_listed() -> None:
    module = tiny_module(cell="gru", num_layers=1, bidirectional=True, pooling="max",
                         ensemble=[{}, {"cell": "lstm", "hidden_size": 3}, {"bidirectional": False, "pooling": "mean"}])
    rnns = [m.encoder.rnn for m in module.members]
    assert [(m.encoder.pool.kind, r.output_size, r.num_directions) for m, r in zip(module.members, rnns)] == [("max", 14, 2), ("max", 6, 2), ("mean", 7, 1)]
    assert [type(r.cells[0]).__name__ for r in rnns] == ["GRUCell", "LSTMCell", "GRUCell"]


def test_each_member_trains_on_its_own_batch_when_given_one_each() -> None:
    torch.manual_seed(0)
    module = tiny_module(cell="gru", num_layers=1, ensemble=2).double()
    first, second = pad_batch([[5, 9, 2, 17], [3, 4, 8]]), pad_batch([[7, 7], [30, 2, 6, 6, 9]])
    batches = [(first[1], first[0], torch.tensor([0, 2])), (second[1], second[0], torch.tensor([1, 1]))]
    loss = training_step(module, batches, seed=1)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(module.members[0](first[0], first[1]), batches[0][2]) + ce(module.members[1](second[0], second[1]), batches[1][2])) / 2
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    with pytest.raises(UserError, match=r"task\.data\.orders=3 .* the model has 2 \(task\.module\.ensemble\)"):
        module.training_step(batches + batches[:1], 0)


@pytest.mark.parametrize("encoder", [dict(cell="gru", num_layers=1, bidirectional=True), dict(encoder="bag")], ids=["bigru", "bag"])
def test_adversarial_loss_pushes_each_sentence_alone_up_its_own_gradient(encoder: dict) -> None:
    """Each sentence's step is its own loss gradient at its embeddings, scaled to `size` times their
    norm: a loop over sentences, each alone (no padding), gives the same loss (float64)."""
    torch.manual_seed(0)
    net = tiny_module(**encoder).double().eval().net
    sentences, labels, size = [[5, 9, 2, 17, 25], [3, 28], [7, 30, 12, 8, 9, 4, 22]], [0, 2, 1], 0.3
    x, lengths = pad_batch(sentences)
    logits, adv_loss = net.forward_adversarial(x, lengths, torch.tensor(labels), size)
    torch.testing.assert_close(logits, net(x, lengths), atol=1e-12, rtol=0)
    ce = torch.nn.functional.cross_entropy
    clean, pushed = [], []
    for s, label in zip(sentences, labels):
        ids, n, y = torch.tensor([s]), torch.tensor([len(s)]), torch.tensor([label])
        emb = net.embed(ids).detach().requires_grad_()
        loss = ce(net.classify(ids, emb, n), y)
        (grad,) = torch.autograd.grad(loss, emb)
        clean.append(loss.detach())
        pushed.append(ce(net.classify(ids, emb.detach() + size * emb.norm() * grad / grad.norm(), n), y).detach())
    torch.testing.assert_close(adv_loss, torch.stack(pushed).mean(), atol=1e-12, rtol=0)
    assert adv_loss > torch.stack(clean).mean()  # the push is uphill: a sign error fails here


def test_training_loss_adds_the_adversarial_loss() -> None:
    torch.manual_seed(0)
    module = tiny_module(cell="lstm", num_layers=1, ensemble=2, adversarial=0.1, embedding_dropout=0.2).double().train()
    x, lengths = pad_batch([[5, 9, 2, 17], [3, 4, 8]])
    y = torch.tensor([0, 2])
    loss = training_step(module, (lengths, x, y), seed=1)
    torch.manual_seed(1)  # the same dropout draws
    parts = [m.forward_adversarial(x, lengths, y, 0.1) for m in module.members]
    ce = torch.nn.functional.cross_entropy
    expected = sum(ce(logits, y) + adv for logits, adv in parts) / 2
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    with pytest.raises(UserError, match=r"task\.module\.adversarial=-0\.1: must be a non-negative number"):
        tiny_module(adversarial=-0.1)
    with pytest.raises(UserError, match=r"task\.module\.adversarial=0\.1 and task\.module\.lm_weight=0\.5"):
        tiny_module(adversarial=0.1, lm_weight=0.5)
