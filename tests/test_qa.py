"""The question generator (shipped qa_kjv): the tagger finds answers an untrained one misses, the
questions end with '?' and name the passage, the pointer copies unknown names, and the tab's
handlers refuse bad input clearly."""
import pytest
import torch

from models.core import checkpoint
from models.core.family import seeded
from models.core.train import SHIPPED
from models.text import seq2seq

QA = SHIPPED / "qa_kjv.safetensors"
pytestmark = pytest.mark.skipif(not QA.exists(), reason="qa_kjv not shipped")
BOUND = 0.6  # share of held-out passages whose best span overlaps a true answer


@pytest.fixture(scope="module")
def qa():
    model, _, _ = checkpoint.load(QA)
    return model


@pytest.fixture(scope="module")
def held_out():
    return list(dict.fromkeys(p for p, _, _ in seq2seq.split_questions("test")))[:120]


def test_tagger_beats_the_bound_an_untrained_tagger_fails(qa, held_out):
    torch.manual_seed(0)
    untrained = seq2seq.build(qa.config).eval()
    assert seq2seq.span_overlap(qa, held_out) > BOUND > seq2seq.span_overlap(untrained, held_out)


def test_questions_end_with_a_question_mark_and_name_the_passage(qa, held_out):
    checks = seq2seq.question_checks(qa, held_out[:40])
    assert checks["ends_with_question_mark"] >= 0.95 and checks["mentions_passage_word"] >= 0.9


def test_pointer_copies_a_name_outside_the_vocabulary(qa):
    passage = "And Zorobabbel begat Quintarius, and Quintarius begat Melchior."
    names = {"Zorobabbel", "Quintarius", "Melchior"}
    assert not {n.lower() for n in names} & set(qa.voc.index)
    tokens, span, outs = seq2seq.ask(qa, passage, 3, 4, n=3, beam=3)
    assert span.text == "Quintarius"
    assert any("Zorobabbel" in o.tokens for o in outs), [o.text for o in outs]  # the one who begat the answer
    for o in outs:
        copied = [g for t, g in zip(o.tokens, o.p_gen) if t in names]
        assert copied and max(copied) < 0.5, o.text  # the pointer, not the vocabulary, wrote the name
        assert torch.allclose(o.attention.sum(-1), torch.ones(len(o.tokens)), atol=1e-5)


def test_beam_and_sampled_questions(qa):
    passage = "And Moses said unto Aaron, Take thy rod."
    _, _, beams = seq2seq.ask(qa, passage, n=3, beam=3)
    assert len(beams) == 3 and beams[0].log_prob >= beams[1].log_prob >= beams[2].log_prob
    a = [o.text for o in seq2seq.ask(qa, passage, n=3, beam=1, temperature=1.0, generator=seeded(4))[2]]
    assert a == [o.text for o in seq2seq.ask(qa, passage, n=3, beam=1, temperature=1.0, generator=seeded(4))[2]]


def test_tab_handlers_and_their_messages(qa):
    import gradio as gr

    from studio.tabs import seq2seq as tab

    marked, table, choices = tab.tag_passage("qa_kjv", tab.EXAMPLE)
    assert len(marked) == len(seq2seq.words(tab.EXAMPLE)) and "span probability" in table
    text, heat, caption = tab.ask_questions("qa_kjv", tab.EXAMPLE, "", 3, False, 0.8, 2, 0)
    assert text.count("?") >= 2 and heat.ndim == 3 and "pointer" in caption
    for passage, answer, words in [("", "", "Paste a passage"), ("Moses", "", "one word"),
                                   (tab.EXAMPLE, "Pharaoh", "not in the passage")]:
        with pytest.raises(gr.Error, match=words):
            tab.ask_questions("qa_kjv", passage, answer, 3, False, 0.8, 2, 0)
    with pytest.raises(gr.Error, match="one word"):
        tab.tag_passage("qa_kjv", "Moses")
