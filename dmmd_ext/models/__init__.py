"""Models: a compact transformer usable as a diffusion denoiser or an
autoregressive reference (causal=True)."""

from .transformer import PRESETS, Transformer, TransformerConfig, preset_config, with_noise_input

__all__ = ["PRESETS", "Transformer", "TransformerConfig", "preset_config", "with_noise_input"]
