"""Build small, randomly initialized Parler-TTS models; runs in the Parler environment only:
``.venv-parler/bin/python -m devstack.tiny.parler PATH [--seed N] [--head-scale X]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from devstack.tiny.common import build_tokenizer, init_model, save_model, t5_config

N_CODEBOOKS = 4
CODEBOOK_SIZE = 64


def build_tiny_parler(path: Path | str, seed: int = 0, head_scale: float = 1.0) -> Path:
    """Write a random Parler-TTS model (safetensors, config, tokenizer) to ``path``.

    The T5 description encoder and the decoder are tiny (hidden size 32, one layer). The DAC
    codec has 4 codebooks of 64 entries, but the parler-tts DAC wrapper fixes its convolution
    widths, so it holds about 63M parameters and dominates the size on disk (about 0.25 GB).
    ``head_scale`` multiplies the output heads, so models built with different scales score
    differently.
    """
    from parler_tts import (
        DACConfig,
        ParlerTTSConfig,
        ParlerTTSDecoderConfig,
        ParlerTTSForConditionalGeneration,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos, bos = CODEBOOK_SIZE, CODEBOOK_SIZE + 1
    text = t5_config(len(tokenizer), d_model=32, layers=1, d_ff=64, heads=2)
    codec = DACConfig(
        num_codebooks=N_CODEBOOKS,
        codebook_size=CODEBOOK_SIZE,
        latent_dim=64,
        frame_rate=86,
        sampling_rate=44_100,
    )
    decoder = ParlerTTSDecoderConfig(
        vocab_size=CODEBOOK_SIZE + 1,
        max_position_embeddings=4096,
        num_hidden_layers=1,
        ffn_dim=64,
        num_attention_heads=2,
        hidden_size=32,
        num_codebooks=N_CODEBOOKS,
        pad_token_id=eos,
        eos_token_id=eos,
        bos_token_id=bos,
    )
    config = ParlerTTSConfig(
        text_encoder=text.to_dict(),
        audio_encoder=codec.to_dict(),
        decoder=decoder.to_dict(),
        vocab_size=len(tokenizer),
        pad_token_id=eos,
        decoder_start_token_id=bos,
    )
    model = init_model(ParlerTTSForConditionalGeneration, config, seed, head_scale)
    return save_model(model, tokenizer, path, start_id=bos, pad_id=eos)


def main(argv: list[str] | None = None) -> int:
    """Command line: build one model."""
    parser = argparse.ArgumentParser(description=build_tiny_parler.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(build_tiny_parler(args.path, args.seed, args.head_scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
