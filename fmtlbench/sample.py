"""From a dataset's raw numpy samples to the tensors models train and evaluate on.

Datasets only decode files (``Dataset.read``); everything after that happens here, once, so
every dataset is resized, augmented and normalised alike. Output of ``SampleSet[i]``:

- ``image``: float32 3xHxW, ImageNet-normalised (padding is 0, i.e. the mean colour);
- label-map tasks (``TaskSpec.classes`` set): int64 HxW class ids; every other task: float32
  CxHxW (C = 1 for scalar maps, 3 for surface normals);
- 255 (``IGNORE``) marks pixels without supervision in every label, padding included.

Augmentation (SPEC section 4) draws its randomness from a generator seeded per sample when the
index comes with a seed (``SampleSet[(i, seed)]``, as ``SeededSampler`` yields them), so a sample
is augmented alike whichever DataLoader worker decodes it; a plain index falls back to torch's
global generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fmtlbench.components import Dataset
from fmtlbench.config import Augmentation
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.tasks import IGNORE

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
#: Rec. 601 luma weights: the grey level used by the contrast and saturation jitter.
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear with antialiasing, so downscaling averages instead of aliasing."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def _resize_label(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest neighbour (pixel-centre aligned): labels keep their value set, 255 included."""
    if tuple(label.shape[-2:]) == size:
        return label
    return F.interpolate(label, size=size, mode="nearest-exact")


def _jitter(image: Tensor, strength: float, rng: torch.Generator | None = None) -> Tensor:
    """Random brightness, contrast and saturation, each a factor in [1 - s, 1 + s]."""
    factors = 1 + strength * (2 * torch.rand(3, generator=rng) - 1)
    brightness, contrast, saturation = factors.tolist()
    image = (image * brightness).clamp(0, 1)
    mean = (image * LUMA).sum(dim=1, keepdim=True).mean()
    image = ((image - mean) * contrast + mean).clamp(0, 1)
    grey = (image * LUMA).sum(dim=1, keepdim=True)
    return ((image - grey) * saturation + grey).clamp(0, 1)


def _flip(dataset: Dataset, labels: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mirror left-right, each label as its task kind mirrors it (a mirrored surface's normal
    has its x component negated, for instance)."""
    return {task: dataset.tasks[task].kind.flip(label) for task, label in labels.items()}


def _window(have: int, want: int, rng: torch.Generator | None = None) -> tuple[int, int, int]:
    """(source start, target start, length) of a random crop (have >= want) or placement."""
    if have >= want:
        return int(torch.randint(0, have - want + 1, (1,), generator=rng)), 0, want
    return 0, int(torch.randint(0, want - have + 1, (1,), generator=rng)), have


def _crop_or_pad(tensor: Tensor, size: tuple[int, int], windows: Sequence, fill: float) -> Tensor:
    (sy, ty, h), (sx, tx, w) = windows
    out = tensor.new_full((*tensor.shape[:2], *size), fill)
    out[..., ty : ty + h, tx : tx + w] = tensor[..., sy : sy + h, sx : sx + w]
    return out


class SampleSet(torch.utils.data.Dataset):
    """The samples ``ids`` of ``dataset`` for ``tasks`` as tensors of size ``resolution``.

    Without augmentation the stored sample is resized to ``resolution``. With it, the sample
    is resized to ``resolution`` times a random scale, jittered, maybe flipped, and a window of
    ``resolution`` is cropped out of it (padded with ignore values where it is smaller).
    """

    def __init__(
        self,
        dataset: Dataset,
        ids: Sequence[str],
        tasks: Sequence[str],
        resolution: tuple[int, int],
        augmentation: Augmentation | None = None,
        cache: bool = False,
    ) -> None:
        unknown = [task for task in tasks if task not in dataset.tasks]
        if unknown:
            raise ConfigError(
                f"dataset {dataset.name!r} has no task {unknown[0]!r}; "
                f"its tasks: {', '.join(dataset.tasks)}"
            )
        if len(resolution) != 2 or any(int(v) != v or v <= 0 for v in resolution):
            raise ConfigError(f"resolution must be two positive integers (H, W), got {resolution}")
        self.dataset = dataset
        self.ids = list(ids)
        self.tasks = list(tasks)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.augmentation = augmentation if augmentation and augmentation.enabled else None
        self._cache: dict[str, dict[str, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """The decoded sample, from memory when caching (small sets are re-read every epoch)."""
        sample_id = self.ids[index]
        if self._cache is not None and sample_id in self._cache:
            return self._cache[sample_id]
        sample = self.dataset.read(sample_id, self.tasks)
        if self._cache is not None:
            self._cache[sample_id] = sample
        return sample

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Tensor]:
        rng = None
        if isinstance(index, tuple):
            index, seed = index
            rng = torch.Generator().manual_seed(seed)
        image, labels = self._tensors(index)
        aug = self.augmentation
        if aug is None:
            image = _resize_image(image, self.resolution)
            labels = {t: _resize_label(v, self.resolution) for t, v in labels.items()}
            return self._finish((image - IMAGENET_MEAN) / IMAGENET_STD, labels, self.dataset)
        span = aug.scale_max - aug.scale_min
        scale = aug.scale_min + span * float(torch.rand((), generator=rng))
        size = (
            max(1, round(self.resolution[0] * scale)),
            max(1, round(self.resolution[1] * scale)),
        )
        image = _resize_image(image, size)
        labels = {t: _resize_label(v, size) for t, v in labels.items()}
        if aug.jitter > 0:
            image = _jitter(image, aug.jitter, rng)
        if aug.flip and float(torch.rand((), generator=rng)) < 0.5:
            image, labels = image.flip(-1), _flip(self.dataset, labels)
        image = (image - IMAGENET_MEAN) / IMAGENET_STD
        windows = [
            _window(have, want, rng) for have, want in zip(size, self.resolution, strict=True)
        ]
        image = _crop_or_pad(image, self.resolution, windows, 0.0)
        labels = {t: _crop_or_pad(v, self.resolution, windows, IGNORE) for t, v in labels.items()}
        return self._finish(image, labels, self.dataset)

    def _tensors(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Image 1x3xHxW in [0, 1] and float32 1xCxHxW labels, checked against the image."""
        raw = self.raw(index)
        # torch.tensor copies: outputs never alias the (possibly cached, read-only) raw arrays.
        image = torch.tensor(raw["image"]).permute(2, 0, 1).unsqueeze(0).float() / 255
        labels: dict[str, Tensor] = {}
        for task in self.tasks:
            label = torch.tensor(np.asarray(raw[task], dtype=np.float32))
            label = label.permute(2, 0, 1) if label.ndim == 3 else label.unsqueeze(0)
            if label.shape[-2:] != image.shape[-2:]:
                raise DataError(
                    f"{self.dataset.name} sample {self.ids[index]!r}: {task} label is "
                    f"{tuple(label.shape[-2:])} but the image is {tuple(image.shape[-2:])}"
                )
            labels[task] = label.unsqueeze(0)
        return image, labels

    @staticmethod
    def _finish(image: Tensor, labels: dict[str, Tensor], dataset: Dataset) -> dict[str, Tensor]:
        out: dict[str, Any] = {"image": image[0].contiguous()}
        for task, label in labels.items():
            classes = dataset.tasks[task].classes is not None
            out[task] = label[0, 0].round().long() if classes else label[0].contiguous()
        return out


class EpochGenerator(torch.Generator):
    """A CPU generator that counts its ``manual_seed`` calls, so that a sampler can tell a
    reseed (epochs start over) from draws by others, even when the seed value repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.seedings = 0

    def manual_seed(self, seed: int) -> EpochGenerator:
        self.seedings += 1
        super().manual_seed(seed)
        return self

    def __reduce__(self):  # keep the type and the count across processes (Ray, spawn)
        return _rebuild_generator, (self.get_state(), self.initial_seed(), self.seedings)


def _rebuild_generator(state: Tensor, seed: int, seedings: int) -> EpochGenerator:
    gen = EpochGenerator()
    gen.manual_seed(seed)
    gen.set_state(state)
    gen.seedings = seedings
    return gen


class SeededSampler(torch.utils.data.Sampler[tuple[int, int]]):
    """Sample indices, each with the seed of its augmentation, in a shuffled or fixed order.

    Everything random about an epoch (its order and every sample's seed) is fixed in the main
    process from ``generator``'s seed and the epoch's number since that seed was set, so any
    number of DataLoader workers, persistent or not, yields the same batches as none. The
    seed is read, never drawn from: the DataLoader draws its workers' base seed from the same
    generator once per iterator, which persistent workers make once per run instead of once
    per epoch. The engine sets the seed per client and round, which keeps resume exact.
    """

    def __init__(self, size: int, shuffle: bool, generator: EpochGenerator | None = None) -> None:
        self.size = size
        self.shuffle = shuffle
        self.generator = generator if generator is not None else EpochGenerator()
        self._seeded: tuple[int, int] | None = None
        self._epoch = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        seed = self.generator.initial_seed()
        seeded = (seed, getattr(self.generator, "seedings", 0))
        if seeded != self._seeded:
            self._seeded, self._epoch = seeded, 0
        rng = torch.Generator().manual_seed((seed * 1_000_003 + self._epoch) % 2**63)
        self._epoch += 1
        order = torch.randperm(self.size, generator=rng) if self.shuffle else range(self.size)
        seeds = torch.randint(0, 2**62, (self.size,), generator=rng).tolist()
        return iter([(int(i), s) for i, s in zip(order, seeds, strict=True)])
