"""The Gaussians & EM tab's handlers, called as the page calls them: good input gives the views, bad
input (a Σ that is not positive definite, a singular data set, k above the number of points, a CSV
with text or one column, wrong types) gives a clear message, and the page keeps working."""
import json

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from models.density import descent, gaussian, gmm
from studio.tabs import basics as tab

FAITHFUL = gaussian.REAL[0]
EM_DEFAULTS = (FAITHFUL, None, 0, 2, "k-means++")


def csv_file(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_normal_view_and_its_fit_button():
    img, text = tab.normal(170, 8, "sons")
    assert img.ndim == 3 and "Log-likelihood" in text
    mu, sigma = tab.normal_fit("sons")
    h = gaussian.heights("sons")
    assert mu == pytest.approx(float(h.mean()), abs=0.01) and sigma == pytest.approx(float(h.std(correction=0)), abs=0.01)
    _, at_fit = tab.normal(mu, sigma, "sons")
    assert "mixture" in tab.normal(170, 8, "all")[1]
    fit_ll, yours = [float(v.replace(",", "")) for v in __import__("re").findall(r"\*\*(-[\d,.]+)\*\* nats", at_fit)]
    assert yours == pytest.approx(fit_ll, abs=0.5)  # the sliders at the fit give (nearly) the fit's value
    with pytest.raises(gr.Error, match="σ must be a number"):
        tab.normal(170, 0, "sons")
    with pytest.raises(gr.Error, match="Heights must be one of"):
        tab.normal(170, 8, "cats")


def test_explorer_draws_a_valid_sigma_and_refuses_a_broken_one():
    contour, surface, text = tab.mvn(0.5, -0.5, 2.0, 1.0, 0.8, 300, 0)
    assert contour.ndim == surface.ndim == 3 and "positive definite" in text and "ρ = 0.57" in text
    again = tab.mvn(0.5, -0.5, 2.0, 1.0, 0.8, 300, 0)[0]
    assert np.array_equal(contour, again)  # seeded samples
    assert not np.array_equal(contour, tab.mvn(0.5, -0.5, 2.0, 1.0, 0.8, 300, 1)[0])
    broken = tab.mvn(0, 0, 1.0, 1.0, 1.2, 300, 0)
    assert broken[0] == gr.update() and broken[1] == gr.update()  # the last valid views stay
    assert "not positive definite" in broken[2] and "±0.999" in broken[2]
    assert "variance is 0" in tab.mvn(0, 0, 0.0, 1.0, 0.0, 300, 0)[2]
    assert tab.mvn(0, 0, 1.0, 1.0, 0.5, 0, 0)[0].ndim == 3  # no samples is fine
    for bad in ((9, 0, 1, 1, 0, 10, 0), ("x", 0, 1, 1, 0, 10, 0), (0, 0, 1, 1, float("nan"), 10, 0),
                (0, 0, 1, 1, 0, 10.5, 0), (0, 0, 1, 1, 0, 10, -1), (0, 0, 1, 1, 0, 10, "é")):
        with pytest.raises(gr.Error):
            tab.mvn(*bad)


def test_fit_of_shipped_toy_and_uploaded_data(tmp_path):
    img, surface, text = tab.fit_data(gaussian.REAL[1], None, 0)
    assert img.ndim == 3 and "Galton" in text and "Log-likelihood" in text
    assert "Old Faithful" in tab.fit_data(FAITHFUL, None, 0)[2]
    toy = tab.fit_data("tilted blob", None, 3)[2]
    assert toy == tab.fit_data("tilted blob", None, 3)[2] != tab.fit_data("tilted blob", None, 4)[2]
    path = csv_file(tmp_path, "height,weight\n170,65\n180,81\n165,58\n175,70\n160,55\n")
    assert "data.csv, 5 points" in tab.fit_data(tab.YOUR_CSV, path, 0)[2]
    assert tab.uploaded(path)[:2] == (tab.YOUR_CSV, tab.YOUR_CSV)


@pytest.mark.parametrize("text, message", [
    ("x,y\n1,2\n3,abc\n4,5\n", "line 3: 'abc' is not a number"),
    ("height\n170\n180\n175\n", "1 column"),
    ("x,y\n1,2\n2,4\n3,6\n4,8\n", "not positive definite.*line"),  # a singular covariance
    ("x,y\n5,5\n5,5\n5,5\n", "not positive definite"),
])
def test_bad_csv_gives_a_message_and_the_page_keeps_working(tmp_path, text, message):
    path = csv_file(tmp_path, text)
    with pytest.raises(gr.Error, match=message):
        tab.fit_data(tab.YOUR_CSV, path, 0)
    note = tab.uploaded(path)[2]
    assert note.startswith("⚠") or "Read" in note  # (the singular ones read fine; only fitting fails)
    assert tab.fit_data(FAITHFUL, None, 0)[0].ndim == 3  # and the next request works


def test_your_csv_without_an_upload_says_so():
    with pytest.raises(gr.Error, match="Upload a CSV"):
        tab.fit_data(tab.YOUR_CSV, None, 0)
    with pytest.raises(gr.Error, match="Data must be one of"):
        tab.fit_data("nope", None, 0)
    with pytest.raises(gr.Error, match="missing or not a file"):
        tab.fit_data(tab.YOUR_CSV, "1,2\n3,4\n5,6\n", 0)  # a string is a path, never CSV text


def test_descent_draws_the_path_and_reports_divergence():
    path, plane, curve, text = tab.descend(0, 2, 0.001, 3000, "gradient descent")
    assert plane.shape == (500, 640, 3) and curve.ndim == 3 and "3,000" in text
    assert np.allclose(path["points"][0], [0, 2]) and len(path["points"]) <= 2000
    assert "Diverged at iteration" in tab.descend(0, 2, 0.01, 1000, "gradient descent")[3]
    for bad in ((0, 2, 0, 10, "Adam"), (0, 2, 0.001, 0, "Adam"), (0, 2, 0.001, 10, "sgd"), ("a", 2, 0.001, 10, "Adam"),
                (0, 2, 0.001, 1e9, "Adam")):
        with pytest.raises(gr.Error):
            tab.descend(*bad)


def test_a_click_on_the_plane_gives_autograds_gradient_there():
    x0, x1 = tab.click_gradient(None, type("Evt", (), {"index": list(tab.to_pixel(-1.2, 1.7))})())
    assert (x0, x1) == pytest.approx((-1.2, 1.7), abs=0.01)
    path = tab.descend(0, 2, 0.001, 100, "gradient descent")[0]
    img, text = tab.gradient(x0, x1, path)
    f, (g0, g1) = descent.gradient_at(x0, x1)
    assert img.shape == (500, 640, 3) and f"{g0:.4g}" in text and f"{g1:.4g}" in text
    assert tab.gradient(0, 2)[0].shape == img.shape  # from the API: no path kept, still drawn
    with pytest.raises(gr.Error, match="x₁ must be a number"):
        tab.gradient(0, float("inf"))


def ll_of(status: str) -> float:
    return float(status.split("log-likelihood **")[1].split("**")[0].replace(",", ""))


def test_em_step_by_step_never_lowers_the_log_likelihood():
    session, plane, curve, status = tab.em_start(None, *EM_DEFAULTS)
    assert plane.ndim == curve.ndim == 3 and "Iteration **0**" in status
    lls = [ll_of(status)]
    for step in (tab.em_e, tab.em_m) * 4:
        session, plane, curve, status = step(session, *EM_DEFAULTS)
        lls.append(ll_of(status))
    assert np.all(np.diff(lls) >= -1e-6) and lls[-1] > lls[0] and "Iteration **4**" in status
    *_, (session, _, _, status) = list(tab.em_run(session, *EM_DEFAULTS, 500))
    assert "Converged" in status and session.em.mixture().k == 2
    assert np.all(np.diff(session.em.log_likelihoods) >= -1e-8)


def test_em_m_step_first_and_changed_settings_are_explained():
    session, *_, status = tab.em_m(None, *EM_DEFAULTS)
    assert "an E-step ran first" in status and session.em.iteration == 1
    session2, *_, status = tab.em_e(session, FAITHFUL, None, 0, 3, "k-means++")
    assert "started afresh" in status and session2.em.k == 3 and session2 is not session
    for init in gmm.INITS:
        assert tab.em_start(None, "three blobs", None, 1, 3, init)[0].em.k == 3


def test_k_larger_than_the_points_and_bad_controls_are_refused(tmp_path):
    path = csv_file(tmp_path, "x,y\n0,0\n1,0\n0,1\n")
    with pytest.raises(gr.Error, match="more components than the 3 points"):
        tab.em_start(None, tab.YOUR_CSV, path, 0, 5, "random")
    assert tab.em_start(None, tab.YOUR_CSV, path, 0, 2, "random")[0].em.k == 2  # still working
    for bad in ((FAITHFUL, None, 0, 0, "random"), (FAITHFUL, None, 0, 2.5, "random"), (FAITHFUL, None, 0, 2, "x"),
                (FAITHFUL, None, "s", 2, "random"), ("nope", None, 0, 2, "random")):
        with pytest.raises(gr.Error):
            tab.em_e(None, *bad)
    with pytest.raises(gr.Error, match="Max iterations"):
        list(tab.em_run(None, *EM_DEFAULTS, 0))


def test_ancestral_samples_are_seeded_shown_over_the_data_and_exported():
    session, picture, caption, record, files = tab.em_sample(None, "three blobs", None, 0, 3, "k-means++", 400, 7)
    assert "Fitted first" in caption and "seed **7**" in caption and record["seed"] == 7
    assert record["controls"]["k"] == 3 and len(record["controls"]["means"]) == 3
    again = tab.em_sample(session, "three blobs", None, 0, 3, "k-means++", 400, 7)
    assert np.array_equal(picture, again[1]) and "Fitted first" not in again[2]
    assert not np.array_equal(picture, tab.em_sample(session, "three blobs", None, 0, 3, "k-means++", 400, 8)[1])
    png, table = files
    assert json.loads(Image.open(png).text["provenance"])["seed"] == 7
    rows = open(table).read().splitlines()
    assert len(rows) == 401 and rows[0].endswith("component")
    with pytest.raises(gr.Error, match="Samples"):
        tab.em_sample(session, "three blobs", None, 0, 3, "k-means++", 0, 7)
