"""The likelihood table: generic over every family with a log_likelihood hook, grouped by preprocessing,
ranked inside a group, bounds marked, the caveat printed; the stored table is what the tab shows."""
import json

import pytest
import torch

from models.core import checkpoint
from models.density import likelihood
from models.image import hvae
from studio.tabs import likelihoods as tab


def test_the_registry_families_with_a_hook_take_part():
    names = set(likelihood.likelihood_families())
    assert {"realnvp", "hvae"} <= names and "gan" not in names


def test_any_family_with_a_hook_gets_rows_and_bounds_get_a_tighter_iwae_row(tmp_path):
    torch.manual_seed(0)
    config = hvae.FAMILY.config("tiny")
    model = hvae.FAMILY.build(config)
    checkpoint.save(tmp_path / "toy.safetensors", model, "hvae", config)
    (tmp_path / "toy.json").write_text(json.dumps({"family": "hvae"}))
    (tmp_path / "other.json").write_text("not json")
    result = likelihood.table(30, folder=tmp_path, families={"hvae": hvae.FAMILY})
    rows = result["rows"]
    by = {r["estimate"]: r for r in rows}
    assert set(by) == {"ELBO", f"IWAE k={likelihood.IWAE_K}"}
    assert by[f"IWAE k={likelihood.IWAE_K}"]["nats"] <= by["ELBO"]["nats"]  # the tighter bound
    assert all(r["kind"] == "bound" and r["test_examples"] == 30 and r["group"] == "binarised" for r in rows)
    assert rows[0]["nats"] <= rows[1]["nats"] and [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["bits_per_dim"] == pytest.approx(rows[0]["nats"] / (784 * 0.6931471805599453))
    text = likelihood.format_table(result)
    assert "Caveat" in text and "bound" in text and "binarised" in text


def test_an_rbm_joins_the_table_as_an_ais_estimate(tmp_path):
    from models.energy import rbm

    config = rbm.FAMILY.config("tiny")
    checkpoint.save(tmp_path / "toy_rbm.safetensors", rbm.FAMILY.build(config), "rbm", config)
    (tmp_path / "toy_rbm.json").write_text(json.dumps({"family": "rbm"}))
    rows = likelihood.table(20, folder=tmp_path, families={"rbm": rbm.FAMILY})["rows"]
    assert [(r["kind"], r["estimate"]) for r in rows] == [("estimate", "AIS estimate")]
    assert rows[0]["nats"] > 0 and rows[0]["group"] == "binarised"


def test_an_rbm_row_reuses_the_log_z_on_its_own_card_only(tmp_path):
    """log Z does not depend on the test images: a card written for these weights gives it; a card
    for other weights (another step) does not, and AIS runs."""
    from models.energy import rbm

    config = rbm.FAMILY.config("tiny")
    checkpoint.save(tmp_path / "toy_rbm.safetensors", rbm.FAMILY.build(config), "rbm", config, step=7)
    card = {"family": "rbm", "config": checkpoint.read_meta(tmp_path / "toy_rbm.safetensors")["config"],
            "steps": 7, "metrics": {"log_z": 1000.0, "ais_runs": config.ais_runs, "ais_betas": config.ais_betas}}
    (tmp_path / "toy_rbm.json").write_text(json.dumps(card))
    table = lambda: likelihood.table(20, folder=tmp_path, families={"rbm": rbm.FAMILY})["rows"][0]["nats"]
    from_card = table()
    (tmp_path / "toy_rbm.json").write_text(json.dumps({**card, "steps": 8}))
    from_ais = table()
    assert from_card == pytest.approx(from_ais + 1000.0 - rbm.ais_estimate(
        checkpoint.load(tmp_path / "toy_rbm.safetensors")[0], config.ais_runs, config.ais_betas).log_z)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, 10**9])
def test_bad_counts_are_refused(n):
    with pytest.raises(ValueError):
        likelihood.table(n)


def test_stored_table_covers_every_shipped_likelihood_checkpoint_grouped_and_ranked():
    stored = likelihood.load_table()
    assert stored is not None, "run python -m models.density.likelihood"
    shipped = {p.stem for fam in likelihood.likelihood_families()
               for p in likelihood.shipped_checkpoints(fam, likelihood.ASSETS / "checkpoints")}
    assert shipped <= {r["checkpoint"] for r in stored["rows"]}
    for group in stored["groups"]:
        rows = [r for r in stored["rows"] if r["group"] == group]
        assert [r["nats"] for r in rows] == sorted(r["nats"] for r in rows)
        assert len({r["preprocessing"] for r in rows}) == 1
    md = tab.markdown(stored)
    assert "Caveat" in md and "bound" in md and "dequantisation" in md


def test_tab_recomputes_on_a_few_images():
    md, result, path = tab.recompute(5)
    assert result["test_examples"] == 5 and all(r["test_examples"] == 5 for r in result["rows"])
    assert json.loads(open(path).read())["provenance"]["controls"]["test_images"] == 5
    import gradio as gr

    with pytest.raises(gr.Error):
        tab.recompute(float("nan"))
