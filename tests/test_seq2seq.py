"""The encoder–decoder: teacher forcing learns a toy copy task, attention rows are distributions,
the pointer's extended vocabulary, decoding controls and bad input."""
import pytest
import torch

from models import FAMILIES
from models.core.family import last, seeded
from models.text import seq2seq

FAM = FAMILIES["seq2seq"]


@pytest.fixture(scope="module")
def copier():
    """A small attention model trained for 150 steps on copying strings of 2–5 symbols."""
    config = FAM.config("tiny", embedding=16, hidden=32, attention=32, batch_size=32, lr=1e-2, pointer=False)
    tensors, _ = FAM.examples(config, "train")
    torch.manual_seed(0)
    model = FAM.build(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        idx = torch.randint(len(tensors[0]), (config.batch_size,), generator=g)
        loss = FAM.train_step(model, tuple(t[idx] for t in tensors), config)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_teacher_forced_loss_falls_near_zero_on_copy(copier):
    model, losses = copier
    assert losses[0] > 2.0  # log 20 symbols ≈ 3
    assert sum(losses[-10:]) / 10 < 0.15
    held = FAM.evaluate(model, *FAM.examples(model.config, "test")[0])
    assert held["val_accuracy"] > 0.95


def test_decoding_copies_and_attention_rows_sum_to_one(copier):
    model, _ = copier
    src = list("qbhse")
    (out,) = seq2seq.generate(model, src, (0, 0), 1, beam=3)
    assert out.tokens[:5] == src and out.tokens[-1] == seq2seq.EOS
    assert out.attention.shape == (len(out.tokens), len(src))
    assert torch.allclose(out.attention.sum(-1), torch.ones(len(out.tokens)), atol=1e-5)
    # copying reads the source in order: output word i attends most to source word i
    assert out.attention[:5].argmax(-1).tolist() == list(range(5))


def test_sampled_outputs_follow_the_seed(copier):
    model, _ = copier
    a = last(FAM.sample(model, 3, generator=seeded(1), temperature=2.0))
    assert a == last(FAM.sample(model, 3, generator=seeded(1), temperature=2.0)) and len(a) == 3


def test_extended_vocabulary_lets_the_pointer_name_unknown_words():
    voc = seq2seq.Vocab(seq2seq.build_vocab("copy", 100))
    ids, ext, oov = voc.source(["a", "zorobabel", "b", "zorobabel"])
    assert ids == [4, 1, 5, 1] and ext == [4, len(voc), 5, len(voc)] and oov == ["zorobabel"]
    assert voc.target(["zorobabel", "quux", "a"], oov) == [len(voc), 1, 4]  # copyable, unknown, known
    model = FAM.build(FAM.config("tiny", pointer=True)).eval()
    with torch.no_grad():
        memory = model.encode(torch.tensor([ids]), torch.zeros(1, 4, dtype=torch.int64))
    s, ctx = memory[3], memory[0].new_zeros(1, memory[0].shape[-1])
    with torch.no_grad():
        _, _, a, p, g = model.step(torch.tensor([2]), s, ctx, memory, torch.tensor([ext]), len(oov))
    assert p.shape == (1, len(voc) + 1) and p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert p[0, len(voc)] > 0  # the unknown word can be written: it is copied from the source
    assert a.sum().item() == pytest.approx(1.0, abs=1e-5) and 0 < float(g) < 1


@pytest.mark.parametrize("passage, words", [("", "Paste a passage"), ("   ", "Paste a passage"),
                                             ("Moses", "one word"), (None, "Paste a passage"),
                                             ("word " * 200, "at most")])
def test_bad_passages_are_refused_clearly(passage, words):
    with pytest.raises(ValueError, match=words):
        seq2seq.check_passage(passage)


@pytest.mark.parametrize("start, end", [(5, 9), (-1, 2), (2, 2), (float("nan"), 1), ("a", 2)])
def test_answer_span_outside_the_passage_is_refused(start, end):
    tokens = seq2seq.words("Adam knew Eve his wife.")
    with pytest.raises(ValueError, match="answer span"):
        seq2seq.check_span(tokens, start, end)


def test_decoding_controls_are_checked(copier):
    model, _ = copier
    for kw, words in [({"beam": 0}, "beam"), ({"temperature": 0.0}, "emperature"),
                      ({"temperature": float("nan")}, "emperature"), ({"n": 100}, "number of outputs"),
                      ({"beam": 2.5}, "whole number")]:
        with pytest.raises(ValueError, match=words):
            seq2seq.generate(model, list("abc"), (0, 0), **{"n": 1, **kw})
