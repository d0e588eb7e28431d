"""The Boltzmann machines tab's handlers, called as the page calls them on the shipped checkpoints: good
input gives the views, bad input a clear message (gr.Error)."""
import math

import gradio as gr
import torch
import pytest

from studio import widgets
from studio.tabs import boltzmann as tab

config = widgets.friendly(tab.train_config)


def drain(gen):
    out = None
    for out in gen:
        pass
    return out


def test_the_gibbs_chain_continues_from_the_visitors_state_and_restarts_on_request():
    img, md, state = drain(tab.gibbs("rbm_mnist", 0, 3, "noise", 0, 2, None))
    assert img.ndim == 3 and state["t"] == 2 and "**2 sweeps**" in md
    _, md, state = drain(tab.gibbs("rbm_mnist", 0, 3, "noise", 0, 3, state))
    assert state["t"] == 5 and "**5 sweeps**" in md
    _, md, fresh = drain(tab.new_chain("rbm_mnist", 0, 3, "test image", 7, 1, state))
    assert fresh["t"] == 1 and "test image 7" in md
    again = drain(tab.gibbs("rbm_mnist", 0, 3, "noise", 0, 2, None))[2]
    first = drain(tab.gibbs("rbm_mnist", 0, 3, "noise", 0, 2, None))[2]
    assert torch.equal(again["v"], first["v"])  # same seed, same chain


def test_filters_fill_in_and_ais_give_their_views():
    img, md = tab.filters("rbm_mnist", 16)
    assert img.ndim == 2 and "16 of 500" in md
    assert tab.filters("dbn_mnist", 4)[0].ndim == 2  # a DBN's first layer
    picture, caption, record, path = drain(tab.fill_in("rbm_mnist", 3, "bottom half", 0, 2, 5))
    assert picture.shape[1] > picture.shape[0] and "bottom half missing" in caption and path.endswith(".png")
    figure, md = drain(tab.estimate("rbm_mnist", 5, 50, 50, 0))
    assert figure.ndim == 3 and "log Ẑ" in md and "nats" in md


def test_add_a_layer_grows_the_visitors_dbn_each_click():
    img, md, state = drain(tab.add_layer("dbn_mnist", 20, 10, "cd", 1, 0, 2, None))
    assert img.ndim == 2 and "784-500-500-20" in md
    _, md, state = drain(tab.add_layer("dbn_mnist", 10, 10, "pcd", 1, 0, 2, state))
    assert "784-500-500-20-10" in md and len(state["model"].rbms) == 4


def test_mean_field_and_the_side_by_side_comparison():
    img, md = tab.mean_field_view("dbm_mnist", 0, 3)
    assert img.ndim == 3 and "**3 iterations**" in md
    a, b, md = tab.compare("dbn_mnist", "dbm_mnist", 0, 2, 5)
    assert a.shape == b.shape and "DBN" in md and "DBM" in md and "multiply-adds" in md


def test_train_config_builds_each_family():
    kw = dict(steps=30, batch_size=20, lr=0.01)
    assert type(tab.train_config("RBM", "cd", 3, 50, "", **kw)).__name__ == "RBMConfig"
    assert tab.train_config("DBN", "pcd", 1, 50, "40, 30", **kw).layers == [40, 30]
    dbm = tab.train_config("DBM", "pcd", 1, 50, "40; 30", **kw)
    assert dbm.pretrain_steps == 10 and dbm.steps == 30


@pytest.mark.parametrize("call, message", [
    (lambda: tab.filters("dbn_mnist", 0), "Number of filters must be a whole number from 1 to 500"),
    (lambda: drain(tab.gibbs("dbm_mnist", 0, 2, "noise", 0, 1, None)), "DBM checkpoint; this view runs an RBM"),
    (lambda: drain(tab.gibbs("rbm_mnist", 0, 2, "middle", 0, 1, None)), "Start must be one of"),
    (lambda: drain(tab.gibbs("rbm_mnist", -1, 2, "noise", 0, 1, None)), "Seed must be a whole number"),
    (lambda: drain(tab.fill_in("rbm_mnist", math.nan, "bottom half", 0, 2, 5)), "Test image number"),
    (lambda: drain(tab.fill_in("rbm_mnist", 0, "corner", 0, 2, 5)), "Region must be one of"),
    (lambda: drain(tab.estimate("rbm_mnist", 1, 50, 50, 0)), "AIS runs must be a whole number from 2"),
    (lambda: drain(tab.add_layer("dbn_mnist", 0, 10, "cd", 1, 0, 2, None)), "New layer size"),
    (lambda: drain(tab.add_layer("rbm_mnist", 10, 10, "cd", 1, 0, 2, None)), "No DBN checkpoint named 'rbm_mnist'"),
    (lambda: tab.mean_field_view("dbm_mnist", 0, 51), "Mean-field iterations must be a whole number from 0 to 50"),
    (lambda: config("DBN", "cd", 1, 50, "500, 0", steps=30, batch_size=20, lr=0.01),
     "hidden layer 2 size must be between 1 and 10000"),
    (lambda: config("DBM", "cd", 1, 50, "five", steps=30, batch_size=20, lr=0.01),
     "Layers must be sizes separated by commas"),
    (lambda: config("RBM", "cd", 0, 50, "", steps=30, batch_size=20, lr=0.01), "Gibbs steps k"),
])
def test_bad_input_gives_a_clear_message(call, message):
    with pytest.raises(gr.Error, match=message):
        call()
