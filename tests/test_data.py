"""The shipped datasets load offline, whole, and in the shape every family expects."""
from __future__ import annotations

import pytest
import torch

from models.core import data


@pytest.mark.parametrize("name", ["mnist", "fashion"])
@pytest.mark.parametrize("split, count", [("train", 60_000), ("test", 10_000)])
def test_images_shape_range_and_labels(name, split, count):
    """(N, 1, 28, 28) float32 in [0, 1], not blank, int64 labels 0..9 with every class present."""
    x, y = data.images(name, split)
    assert x.shape == (count, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1
    assert 0.05 < x.mean() < 0.5  # ink on a dark background, not all zeros or all ones
    assert y.shape == (count,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.min() > count // 20  # all ten classes, none nearly missing


def test_images_are_cached():
    """A second call returns the same tensors rather than reading the files again."""
    assert data.images("mnist", "test")[0] is data.images("mnist", "test")[0]


def test_train_and_test_differ():
    """The splits are different images (a mix-up would make held-out metrics meaningless)."""
    train, test = data.images("mnist", "train")[0], data.images("mnist", "test")[0]
    assert not torch.equal(train[:100], test[:100])


def test_unknown_dataset_or_split_is_refused():
    """Unknown names raise a ValueError listing the real choices."""
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'.*fashion.*mnist"):
        data.images("cifar", "train")
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        data.images("mnist", "validation")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.class_names("cifar")


@pytest.mark.parametrize("name, first, last", [("mnist", "0", "9"), ("fashion", "T-shirt/top", "Ankle boot")])
def test_class_names(name, first, last):
    """Ten human-readable class names per dataset, in label order."""
    names = data.class_names(name)
    assert len(names) == 10 and len(set(names)) == 10
    assert names[0] == first and names[-1] == last
