"""Build small, randomly initialized Musicgen TTS models for tests, the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from devstack.tiny.common import build_tokenizer, init_model, save_model, t5_config

Size = Literal["tiny", "small", "mini"]

# (t5 d_model, t5 layers, t5 ff, decoder hidden, decoder layers, decoder ffn, heads)
_SIZES: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "tiny": (32, 1, 64, 32, 1, 64, 2),
    "small": (128, 2, 256, 128, 2, 512, 4),
    "mini": (1024, 24, 2816, 1024, 24, 4096, 16),
}


def build_tiny_musicgen(
    path: Path | str, seed: int = 0, size: Size = "tiny", head_scale: float = 1.0
) -> Path:
    """Write a randomly initialized Musicgen model (safetensors, config, tokenizer) to ``path``.

    ``tiny`` has about 0.3M parameters, ``small`` about 3M, ``mini`` is Parler-TTS-Mini sized
    (about 0.75B: a 24-layer flan-T5-large-like encoder, a 24-layer decoder, 9 codebooks of 1024).
    ``head_scale`` multiplies the output heads: a random model with sharper (wrong) predictions
    has a higher cross-entropy, so models built with different scales score differently.
    """
    from transformers import EncodecConfig, MusicgenConfig, MusicgenForConditionalGeneration
    from transformers.models.musicgen.configuration_musicgen import MusicgenDecoderConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    d_model, enc_layers, d_ff, hidden, dec_layers, ffn, heads = _SIZES[size]
    tokenizer = build_tokenizer()
    if size == "mini":
        codec = EncodecConfig(
            sampling_rate=24_000,
            target_bandwidths=[6.75],
            codebook_size=1024,
            chunk_length_s=None,
            overlap=None,
            normalize=False,
        )
        n_codebooks, codebook_size = 9, 1024
    else:
        codec = EncodecConfig(
            sampling_rate=16_000,
            target_bandwidths=[1.2],
            codebook_size=64,
            codebook_dim=16,
            hidden_size=16,
            num_filters=4,
            num_residual_layers=1,
            num_lstm_layers=1,
            upsampling_ratios=[8, 5, 4, 2],
            chunk_length_s=None,
            overlap=None,
            normalize=False,
        )
        n_codebooks, codebook_size = 4, 64
    text = t5_config(
        len(tokenizer), d_model, enc_layers, d_ff, heads,
        feed_forward_proj="gated-gelu" if size == "mini" else "relu",
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=codebook_size,
        max_position_embeddings=4096,
        num_hidden_layers=dec_layers,
        ffn_dim=ffn,
        num_attention_heads=heads,
        hidden_size=hidden,
        num_codebooks=n_codebooks,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()
    )
    config.decoder_start_token_id = codebook_size
    config.pad_token_id = codebook_size
    model = init_model(MusicgenForConditionalGeneration, config, seed, head_scale)
    return save_model(model, tokenizer, path, start_id=codebook_size, pad_id=codebook_size)
