"""Build small, randomly initialized Musicgen TTS models for tests, the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from scoring.prompts import prompt_set, speakers

Size = Literal["tiny", "small", "mini"]

# (t5 d_model, t5 layers, t5 ff, decoder hidden, decoder layers, decoder ffn, heads)
_SIZES: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "tiny": (32, 1, 64, 32, 1, 64, 2),
    "small": (128, 2, 256, 128, 2, 512, 4),
    "mini": (1024, 24, 2816, 1024, 24, 4096, 16),
}


def _corpus() -> list[str]:
    lines = [p["text"] for p in prompt_set()] + [p["user"] for p in prompt_set()]
    lines += [s["description"] for s in speakers()]
    return lines


def build_tokenizer(vocab_size: int = 512):  # noqa: ANN201 - PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on the shipped prompts (no hub download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_tiny_musicgen(
    path: Path | str, seed: int = 0, size: Size = "tiny", head_scale: float = 1.0
) -> Path:
    """Write a randomly initialized Musicgen model (safetensors, config, tokenizer) to ``path``.

    ``tiny`` has about 0.3M parameters, ``small`` about 3M, ``mini`` is Parler-TTS-Mini sized
    (about 0.75B: a 24-layer flan-T5-large-like encoder, a 24-layer decoder, 9 codebooks of 1024).
    ``head_scale`` multiplies the output heads: a random model with sharper (wrong) predictions
    has a higher cross-entropy, so models built with different scales score differently.
    """
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )
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
    text = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_ff,
        num_layers=enc_layers,
        num_heads=heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
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
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config)
    if head_scale != 1.0:
        with torch.no_grad():
            for head in model.decoder.lm_heads:
                head.weight.mul_(head_scale)
    gen = model.generation_config
    gen.decoder_start_token_id = gen.pad_token_id = gen.bos_token_id = codebook_size
    gen.do_sample = False
    gen.guidance_scale = None
    gen.max_length = 4096
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
