"""The sample pipeline: raw numpy samples -> resized / augmented, normalised tensors.

Expected values come from independent computations: PIL's bilinear resize, a naive loop for
nearest-neighbour label resizing, numpy mirroring for the flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from fmtlbench.components import Dataset
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.sample import Augmentation, SampleSet
from fmtlbench.tasks import IGNORE, TaskSpec

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
ALL_TASKS = ["semseg", "parts", "depth", "normals", "edge", "saliency"]


class ArrayDataset(Dataset):
    """A dataset held in memory: random samples of every task, with some invalid pixels."""

    name = "arrays"
    folder = "Arrays"
    tasks: ClassVar[dict[str, TaskSpec]] = {
        "semseg": TaskSpec("semseg", 5, 5),
        "parts": TaskSpec("parts", 7, 7),
        "depth": TaskSpec("depth", 1),
        "normals": TaskSpec("normals", 3),
        "edge": TaskSpec("edge", 1, pos_weight=0.8),
        "saliency": TaskSpec("saliency", 1, pos_weight=0.95),
    }

    def __init__(self, height: int = 20, width: int = 28, count: int = 3) -> None:
        super().__init__(None, root=".", synthetic=True)
        self.reads = 0
        self.samples = {
            str(i): self._make(np.random.default_rng(i), height, width) for i in range(count)
        }

    @staticmethod
    def _make(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
        normals = rng.normal(size=(h, w, 3)).astype(np.float32)
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        normals[rng.random((h, w)) < 0.1] = IGNORE
        semseg = rng.integers(0, 5, size=(h, w)).astype(np.uint8)
        semseg[rng.random((h, w)) < 0.1] = IGNORE
        depth = rng.uniform(0.5, 9, size=(h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.1] = IGNORE
        return {
            "image": rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8),
            "semseg": semseg,
            "parts": rng.integers(0, 7, size=(h, w)).astype(np.uint8),
            "depth": depth,
            "normals": normals,
            "edge": (rng.random((h, w)) < 0.2).astype(np.float32),
            "saliency": (rng.random((h, w)) < 0.5).astype(np.float32),
        }

    def ids(self, split: str) -> list[str]:
        return list(self.samples)

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        self.reads += 1
        sample = self.samples[sample_id]
        return {key: sample[key].copy() for key in ["image", *tasks]}


def normalised(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW ImageNet-normalised float, computed in numpy."""
    return ((image.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)


def fixed(**kwargs: object) -> Augmentation:
    """An augmentation whose only randomness is what the test asks for."""
    base = {"scale_min": 1.0, "scale_max": 1.0, "flip": False, "jitter": 0.0}
    return Augmentation(**{**base, **kwargs})


@pytest.mark.parametrize("augmentation", [None, Augmentation()])
def test_shapes_and_dtypes_of_every_task(augmentation: Augmentation | None) -> None:
    data = ArrayDataset(17, 23)
    torch.manual_seed(0)
    sample = SampleSet(data, ["0", "1"], ALL_TASKS, (24, 30), augmentation)[1]
    assert set(sample) == {"image", *ALL_TASKS}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 24, 30)
    for task in ("semseg", "parts"):
        assert sample[task].dtype == torch.int64 and sample[task].shape == (24, 30)
    for task in ("depth", "edge", "saliency"):
        assert sample[task].dtype == torch.float32 and sample[task].shape == (1, 24, 30)
    assert sample["normals"].dtype == torch.float32 and sample["normals"].shape == (3, 24, 30)


def test_resize_without_augmentation_matches_pil_and_a_naive_nearest_loop() -> None:
    data = ArrayDataset(20, 28)
    raw = data.samples["0"]
    out = SampleSet(data, ["0"], ["semseg", "normals"], (10, 14))[0]
    # Image: PIL's bilinear filter (which widens its support when shrinking) on each channel.
    pil = np.stack(
        [
            np.array(Image.fromarray(raw["image"][..., c].astype(np.float32) / 255, mode="F")
                     .resize((14, 10), Image.BILINEAR))
            for c in range(3)
        ],
        axis=-1,
    )  # fmt: skip
    expected = ((pil - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-5)
    # Labels: the source pixel whose centre is nearest to the target pixel's centre.
    for i in range(10):
        for j in range(14):
            si, sj = int((i + 0.5) * 20 / 10), int((j + 0.5) * 28 / 14)
            assert out["semseg"][i, j] == raw["semseg"][si, sj]
            np.testing.assert_array_equal(out["normals"][:, i, j].numpy(), raw["normals"][si, sj])


def test_resizing_keeps_labels_in_their_value_set() -> None:
    data = ArrayDataset(20, 28)
    torch.manual_seed(1)
    samples = SampleSet(data, ["0"], ALL_TASKS, (13, 37), Augmentation(jitter=0.5))
    for _ in range(5):
        out = samples[0]
        raw = data.samples["0"]
        for task in ("semseg", "parts", "depth", "edge", "saliency"):
            allowed = set(np.unique(raw[task]).tolist()) | {IGNORE}
            assert set(out[task].unique().tolist()) <= allowed, task


def test_flip_mirrors_everything_and_negates_normals_x() -> None:
    data = ArrayDataset(12, 16)
    raw = data.samples["0"]
    samples = SampleSet(data, ["0"], ["semseg", "normals", "depth"], (12, 16), fixed(flip=True))
    mirrored_normals = raw["normals"][:, ::-1].copy()
    valid = mirrored_normals[..., 0] != IGNORE
    mirrored_normals[valid, 0] *= -1
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = samples[0]
        flipped = not np.array_equal(out["semseg"].numpy(), raw["semseg"])
        seen.add(flipped)
        image, semseg, normals = raw["image"], raw["semseg"], raw["normals"]
        if flipped:
            image, semseg, normals = image[:, ::-1], semseg[:, ::-1], mirrored_normals
        np.testing.assert_allclose(out["image"].numpy(), normalised(image), atol=1e-6)
        np.testing.assert_array_equal(out["semseg"].numpy(), semseg)
        np.testing.assert_array_equal(out["normals"].numpy(), normals.transpose(2, 0, 1))
    assert seen == {True, False}, "12 seeds should give both flipped and unflipped samples"


def test_shrinking_pads_image_with_zero_and_labels_with_ignore() -> None:
    data = ArrayDataset(32, 40)
    torch.manual_seed(3)
    tasks = ["semseg", "depth", "normals"]
    out = SampleSet(data, ["0"], tasks, (32, 40), fixed(scale_min=0.5, scale_max=0.5))[0]
    small = SampleSet(data, ["0"], tasks, (16, 20))[0]  # the same sample, resized only
    pad = (out["image"] == 0).all(dim=0)
    assert int(pad.sum()) == 32 * 40 - 16 * 20
    assert (out["semseg"][pad] == IGNORE).all() and (out["depth"][0][pad] == IGNORE).all()
    assert (out["normals"][:, pad] == IGNORE).all()
    rows, cols = torch.nonzero(~pad, as_tuple=True)
    top, left = int(rows.min()), int(cols.min())
    window = (slice(top, top + 16), slice(left, left + 20))
    assert torch.equal(out["image"][:, window[0], window[1]], small["image"])
    assert torch.equal(out["semseg"][window], small["semseg"])


def test_enlarging_crops_a_window_of_the_scaled_sample() -> None:
    data = ArrayDataset(10, 12)
    torch.manual_seed(5)
    out = SampleSet(data, ["1"], ["semseg"], (10, 12), fixed(scale_min=2.0, scale_max=2.0))[0]
    big = SampleSet(data, ["1"], ["semseg"], (20, 24))[0]
    matches = [
        (y, x)
        for y in range(11)
        for x in range(13)
        if torch.equal(big["image"][:, y : y + 10, x : x + 12], out["image"])
        and torch.equal(big["semseg"][y : y + 10, x : x + 12], out["semseg"])
    ]
    assert matches, "the augmented sample must be a window of the scaled sample"


def test_jitter_touches_the_image_only() -> None:
    data = ArrayDataset(12, 16)
    torch.manual_seed(2)
    out = SampleSet(data, ["0"], ["semseg", "depth"], (12, 16), fixed(jitter=0.5))[0]
    plain = SampleSet(data, ["0"], ["semseg", "depth"], (12, 16))[0]
    assert torch.equal(out["semseg"], plain["semseg"]) and torch.equal(out["depth"], plain["depth"])
    assert not torch.allclose(out["image"], plain["image"], atol=1e-3)
    pixel = out["image"] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    assert pixel.min() >= -1e-5 and pixel.max() <= 1 + 1e-5


def test_same_torch_seed_gives_the_same_augmented_sample() -> None:
    samples = SampleSet(ArrayDataset(20, 28), ["0"], ALL_TASKS, (16, 20), Augmentation())

    def draw(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return samples[0]

    first, again, other = draw(7), draw(7), draw(8)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["image"], other["image"])


def test_cache_reads_each_sample_once() -> None:
    data = ArrayDataset()
    cached = SampleSet(data, ["0", "1"], ["depth"], (20, 28), cache=True)  # stored size
    for _ in range(3):
        cached[0], cached[1]
    assert data.reads == 2
    first = cached[0]["depth"].clone()
    cached[0]["depth"].fill_(-1)  # a caller writing into its sample must not corrupt the cache
    assert torch.equal(cached[0]["depth"], first)
    uncached = SampleSet(data, ["0"], ["depth"], (8, 8))
    uncached[0], uncached[0]
    assert data.reads == 4


def test_bad_input_is_reported() -> None:
    with pytest.raises(ValidationError, match="scale_min"):
        Augmentation(scale_min=2.0, scale_max=1.0)
    with pytest.raises(ValidationError):
        Augmentation(rotate=True)
    with pytest.raises(ValidationError):
        Augmentation(scale_min=0.0)
    data = ArrayDataset()
    with pytest.raises(ConfigError, match="'depht'"):
        SampleSet(data, ["0"], ["depht"], (8, 8))
    with pytest.raises(ConfigError, match="resolution"):
        SampleSet(data, ["0"], ["depth"], (8, 0))
    data.samples["0"]["depth"] = data.samples["0"]["depth"][:-1]
    with pytest.raises(DataError, match="depth"):
        SampleSet(data, ["0"], ["depth"], (8, 8))[0]
