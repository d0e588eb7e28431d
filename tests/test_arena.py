"""The arena: families found in the registry, the same table twice from the same seed."""
import json

from models.core import arena


def test_the_arena_finds_the_mnist_families_and_is_deterministic(tmp_path):
    from models import FAMILIES

    found = arena.mnist_checkpoints()
    assert {"vae", "gan", "realnvp"} <= set(found)
    assert all(FAMILIES[f].kind == "image" for f in found)
    one = arena.run(samples=8, nll_images=8, seed=3, families=["vae", "realnvp"], log=lambda *_: None)
    two = arena.run(samples=8, nll_images=8, seed=3, families=["vae", "realnvp"], log=lambda *_: None)
    strip = lambda r: [{k: v for k, v in row.items() if k != "sampling_s_per_image"} for row in r["rows"]]  # noqa: E731
    assert strip(one) == strip(two)
    realnvp = next(r for r in one["rows"] if r["family"] == "realnvp")
    assert realnvp["nll_nats"] is not None and realnvp["likelihood"] == "exact"
    paths = arena.write(one, tmp_path)
    assert "| RealNVP" in paths["md"].read_text() and paths["png"].stat().st_size > 1000
    assert json.loads(paths["json"].read_text())["seed"] == 3


def test_the_shipped_arena_covers_every_mnist_family():
    rows = json.loads((arena.OUT / "arena.json").read_text())["rows"]
    assert {r["family"] for r in rows} == set(arena.mnist_checkpoints())
    assert all(r["frechet_distance"] is not None for r in rows)
