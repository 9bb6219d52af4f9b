"""Backbones taken from timm as feature extractors (``features_only``).

All of them share one way of getting their initial weights, because a benchmark run must be
reproducible and must never reach the network: random (``scratch``), timm's pretrained weights
from the local Hugging Face cache (``timm``, fully offline), or a local weight file whose
SHA-256 is recorded so the run log says exactly which weights it started from. Each concrete
backbone is a small subclass naming its timm model; anything model-specific (extra creation
arguments, how a checkpoint's names map to the extractor's, the output layout, the study's
decoder shape) is a class attribute or an overridable method.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import Backbone, Params
from fmtlbench.download import sha256_of
from fmtlbench.errors import ConfigError, WeightsMissingError

from .weights import offline_hub, read_state_dict

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import Tensor, nn

    from .pyramid import FeaturePyramid

#: How many offending keys an error message lists before summarising the rest.
SHOWN_KEYS = 5
#: Weight files from the hub, in the order timm itself tries them.
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


class TimmParams(Params):
    """Parameters shared by every timm backbone."""

    weights: str = Field(
        "scratch",
        min_length=1,
        description="initial weights: 'scratch' (random), 'timm' (timm's pretrained weights "
        "from the local Hugging Face cache, offline) or the path of a .pth/.pt/.safetensors "
        "state dict of the timm model",
    )


class TimmBackbone(Backbone):
    """Shared machinery of the timm backbones (not registered itself)."""

    Params: ClassVar[type[Params]] = TimmParams
    #: Name of the model in timm's registry.
    timm_name: ClassVar[str]
    #: Key prefixes of full-model checkpoint entries the extractor lacks (the classifier).
    classifier_prefixes: ClassVar[tuple[str, ...]] = ("fc.",)
    #: The study's decoder shape for this backbone, handed to decoders that accept hints.
    decoder_hints: ClassVar[dict[str, Any]] = {}
    #: Whether timm's stages output N x H x W x C, and the size inputs must be a multiple of.
    channels_last: ClassVar[bool] = False
    patch: ClassVar[int] = 1

    def create_kwargs(self, resolution: tuple[int, int]) -> dict[str, Any]:
        """Extra ``timm.create_model`` arguments (e.g. ``img_size`` for transformers)."""
        return {}

    def wrap(self, body: nn.Module, weights_sha256: str | None) -> FeaturePyramid:
        """The pyramid module around timm's extractor."""
        from .pyramid import FeaturePyramid

        return FeaturePyramid(
            body, weights_sha256, self.decoder_hints, self.channels_last, self.patch
        )

    def adapt_state(self, state: Mapping[str, Tensor], body: nn.Module) -> dict[str, Tensor]:
        """A weight file's entries renamed and reshaped to the extractor's, before the strict
        check: the base drops the classifier, which a features-only model does not have."""
        return {k: v for k, v in state.items() if not k.startswith(self.classifier_prefixes)}

    def build(self, resolution: tuple[int, int]) -> FeaturePyramid:
        _check_resolution(resolution)
        weights = self.params.weights
        if weights == "scratch":
            return self.wrap(self._create(resolution, pretrained=False), None)
        if weights == "timm":
            return self._build_from_cache(resolution)
        path = Path(weights).expanduser()
        state = read_state_dict(path)
        body = self._create(resolution, pretrained=False)
        self._load_strict(body, state, path)
        return self.wrap(body, sha256_of(path))

    def _create(self, resolution: tuple[int, int], pretrained: bool) -> nn.Module:
        # imported here, not at module level: listing and validating backbones must not pay
        # for timm (and torchvision). Not through ``fmtlbench.lazy`` either: torch's own
        # import walks ``sys.modules`` (``inspect.getmodule``) and would start a deferred timm
        # while torch is half initialised.
        import timm

        return timm.create_model(
            self.timm_name,
            features_only=True,
            pretrained=pretrained,
            **self.create_kwargs(resolution),
        )

    def _build_from_cache(self, resolution: tuple[int, int]) -> FeaturePyramid:
        """timm's pretrained weights, read from the local cache with the network switched off.

        The cached file is located first, so a missing file gives the user a clear way out
        instead of a hub error, and its hash is logged like a user-supplied file's.
        """
        try:
            from huggingface_hub import constants
        except ImportError as exc:  # timm would fall back to downloading from a URL
            raise ConfigError(
                "backbone weights 'timm' need the huggingface_hub package to read the local "
                "cache offline; install it or pass a weight file path as weights=<file>"
            ) from exc
        cached = self._cached_hub_file()
        if cached is None:
            raise WeightsMissingError(self._not_cached_message(constants.HF_HUB_CACHE))
        try:
            with offline_hub():
                body = self._create(resolution, pretrained=True)
        except Exception as exc:
            raise ConfigError(
                f"backbone weights 'timm': timm could not load its cached weights for "
                f"{self.timm_name!r} from {cached} offline ({type(exc).__name__}: "
                f"{str(exc)[:200]}); delete the file to fetch it again with internet access, or "
                "pass the path of a weight file as weights=<file>"
            ) from exc
        return self.wrap(body, sha256_of(cached))

    def _cached_hub_file(self) -> Path | None:
        """The file timm would load for the default pretrained tag, if it is in the cache."""
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(self.timm_name)
        if cfg is None or not cfg.hf_hub_id:
            return None
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILENAMES
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
        return None

    def _not_cached_message(self, cache: str) -> str:
        return (
            f"backbone weights 'timm': timm's pretrained weights for {self.timm_name!r} are not "
            f"in the local Hugging Face cache ({cache}) and fmtlbench never downloads during a "
            'run. Either run once with internet access: python -c "import timm; '
            f"timm.create_model('{self.timm_name}', pretrained=True)\", or pass the path of a "
            "weight file (.pth/.pt/.safetensors) as weights=<file>"
        )

    def _load_strict(self, body: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
        """Load ``state`` into ``body``; every weight must match in name and shape.

        A full classifier checkpoint is accepted: ``adapt_state`` drops its classifier entries
        (and renames what the extractor names differently). Missing ``num_batches_tracked``
        counters are tolerated: they are step counters, not weights, and checkpoints converted
        from other libraries often lack them.
        """
        state = self.adapt_state(state, body)
        expected = body.state_dict()
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in expected]
        wrong = [
            f"{k} {tuple(v.shape)} (model {tuple(expected[k].shape)})"
            for k, v in state.items()
            if k in expected and v.shape != expected[k].shape
        ]
        problems = [
            f"{label}: {_few(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        ]
        if problems:
            raise ConfigError(
                f"backbone weights file {path} does not fit timm's {self.timm_name!r} "
                f"({'; '.join(problems)})"
            )
        body.load_state_dict(state, strict=False)


class ResNet18(TimmBackbone):
    """ResNet-18 from timm (11.18 M parameters, five feature scales, strides 2 to 32)."""

    name = "resnet18"
    timm_name = "resnet18"
    decoder_hints: ClassVar[dict[str, Any]] = {"widths": (64, 128, 256, 256, 512), "convs": 3}


class SwinT(TimmBackbone):
    """Swin-T from timm (27.5 M parameters, four feature scales, strides 4 to 32)."""

    name = "swin-t"
    timm_name = "swin_tiny_patch4_window7_224"
    classifier_prefixes = ("head.", "norm.")  # the final norm comes after the last stage
    # Decoder stages mirror the depths of Swin-T's first three stages (2, 2, 6): with these,
    # four NYUD tasks give the study's 52.28 M (MD) and 13.76 M (TC) decoder parameters.
    decoder_hints: ClassVar[dict[str, Any]] = {"widths": (96, 192, 384, 768), "convs": (2, 2, 6)}
    channels_last = True
    patch = 4

    def create_kwargs(self, resolution: tuple[int, int]) -> dict[str, Any]:
        """Windows sized for ``resolution`` (timm shrinks a window to a smaller feature map);
        masks are built per input, so evaluation at another size works too."""
        size = tuple(-(-side // self.patch) * self.patch for side in resolution)
        return {"img_size": size, "strict_img_size": False}

    def adapt_state(self, state: Mapping[str, Tensor], body: nn.Module) -> dict[str, Tensor]:
        """Full-model names (``layers.0.``) become the extractor's (``layers_0.``); position
        index buffers (recomputed by timm) are dropped; relative-position bias tables are
        resized to this resolution's windows with timm's own interpolation, as timm does for
        its pretrained weights. A table whose shape already fits is copied exactly."""
        from timm.layers import resize_rel_pos_bias_table

        expected = body.state_dict()
        out: dict[str, Tensor] = {}
        for key, value in super().adapt_state(state, body).items():
            key = re.sub(r"^layers\.(\d+)\.", r"layers_\1.", key)
            if key.endswith(("relative_position_index", "attn_mask")):
                continue
            table = key.endswith(".relative_position_bias_table") and key in expected
            if table and value.shape != expected[key].shape and value.dim() == 2:
                window = body.get_submodule(key.rpartition(".")[0]).window_size
                try:
                    value = resize_rel_pos_bias_table(value, window, tuple(expected[key].shape))
                except (AssertionError, ValueError, RuntimeError):
                    pass  # left as it is: the strict check reports the wrong shape
            out[key] = value
        return out


def _check_resolution(resolution: tuple[int, int]) -> None:
    if len(resolution) != 2 or not all(isinstance(v, int) and v > 0 for v in resolution):
        raise ConfigError(f"resolution must be two positive integers (H, W), got {resolution!r}")


def _few(keys: list[str]) -> str:
    """At most ``SHOWN_KEYS`` keys, then how many more there are."""
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [ResNet18, SwinT]
