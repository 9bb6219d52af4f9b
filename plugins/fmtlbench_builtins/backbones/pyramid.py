"""The module every timm backbone builds: timm's feature extractor plus what decoders and run
logs read from it. Kept apart from ``timm_backbone`` so that listing and validating backbones
imports neither torch nor timm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


class FeaturePyramid(nn.Module):
    """A timm feature extractor with the attributes decoders and run logs rely on.

    ``channels`` and ``reductions`` (finest first) tell the decoder what it receives;
    ``weights_sha256`` is the SHA-256 of the weight file the encoder started from (``None`` for
    random initialisation) so a run can log it; ``decoder_hints`` carries the study's decoder
    shape for this backbone (see ``fmtlbench.model.build_model``). Transformers' stages give
    N x H x W x C maps (``channels_last``), returned as NCHW; their patch embedding takes only
    sizes divisible by ``patch``, so images are padded at the bottom and right with zeros (the
    mean colour after ImageNet normalisation) and the model resizes predictions back.
    """

    def __init__(
        self,
        body: nn.Module,
        weights_sha256: str | None,
        decoder_hints: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        patch: int = 1,
    ) -> None:
        super().__init__()
        self.body = body
        self.channels: list[int] = list(body.feature_info.channels())
        self.reductions: list[int] = list(body.feature_info.reduction())
        self.weights_sha256 = weights_sha256
        self.decoder_hints: dict[str, Any] = dict(decoder_hints or {})
        self.channels_last, self.patch = channels_last, patch

    def forward(self, image: Tensor) -> list[Tensor]:
        pad_h, pad_w = (-image.shape[-2]) % self.patch, (-image.shape[-1]) % self.patch
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
        features = list(self.body(image))
        return [f.permute(0, 3, 1, 2) for f in features] if self.channels_last else features
