"""Build a small, randomly initialized Whisper checkpoint for tests and benchmarks: the real
architecture and processor, loaded by ``scoring.asr.WhisperTranscriber`` like a downloaded one
(no hub is reachable here). Its transcripts are noise, but the same noise for the same audio."""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
            "<|notimestamps|>")


def build_tiny_whisper(path: Path | str, seed: int = 0) -> Path:
    """Write the checkpoint (safetensors, config, generation config, processor) to ``path``:
    a byte-level tokenizer (256 byte tokens and Whisper's special tokens), one encoder and one
    decoder layer of width 16, 80 mel bins."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    end = SPECIALS[0]
    tokenizer = WhisperTokenizer(str(out / "vocab.json"), str(out / "merges.txt"),
                                 unk_token=end, bos_token=end, eos_token=end, pad_token=end)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=64,
        pad_token_id=ids[end], bos_token_id=ids[end], eos_token_id=ids[end],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        init_std=0.5,  # weights large enough that what it hears changes what it writes
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[end],
        pad_token_id=ids[end], bos_token_id=ids[end], is_multilingual=True, max_length=24,
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], begin_suppress_tokens=[],
        suppress_tokens=[],
    )
    model.save_pretrained(out, safe_serialization=True)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80),
                     tokenizer=tokenizer).save_pretrained(out)
    return out
