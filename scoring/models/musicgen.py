"""The Musicgen family adapter (transformers-native text-conditioned codec language model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scoring.exceptions import ModelLoadError
from scoring.models.base import Generated, TTSModel
from scoring.templates import Template

ARCHITECTURE = "MusicgenForConditionalGeneration"
_MAX_ENCODER_TOKENS = 512


def delay_codes(codes: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Apply the Musicgen delay pattern to (K, T) codes: codebook k is shifted right by k.

    The result has shape (K, T + K - 1); positions outside a codebook's span hold ``pad_id``.
    """
    n_codebooks, n_frames = codes.shape
    delayed = torch.full(
        (n_codebooks, n_frames + n_codebooks - 1), pad_id, dtype=torch.long, device=codes.device
    )
    for k in range(n_codebooks):
        delayed[k, k : k + n_frames] = codes[k]
    return delayed


class MusicgenTTS(TTSModel):
    """Description + text joined by the template into Musicgen's text-encoder prompt."""

    family = "Musicgen"

    def __init__(self, path: Path, template: Template, device: torch.device) -> None:
        from transformers import MusicgenForConditionalGeneration

        self._load(MusicgenForConditionalGeneration, path, template, device,
                   cast=("text_encoder", "decoder", "enc_to_dec_proj"))
        self.pad_id = int(self.model.config.decoder.pad_token_id)
        self.bandwidth = self._matching_bandwidth(self.model.config.audio_encoder.target_bandwidths)

    def _matching_bandwidth(self, bandwidths: list[float]) -> float:
        quantizer = self.model.audio_encoder.quantizer
        for bandwidth in bandwidths:
            if quantizer.get_num_quantizers_for_bandwidth(bandwidth) == self.n_codebooks:
                return float(bandwidth)
        raise ModelLoadError(
            f"the codec gives no bandwidth with {self.n_codebooks} codebooks "
            f"(target bandwidths {bandwidths}); decoder and codec do not match"
        )

    def _encode_text(self, descriptions: list[str], texts: list[str]) -> dict[str, torch.Tensor]:
        prompts = [self.template.joined(d, t) for d, t in zip(descriptions, texts, strict=True)]
        enc = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=_MAX_ENCODER_TOKENS,
            return_tensors="pt",
        )
        keep = ("input_ids", "attention_mask")
        return {k: v.to(self.device) for k, v in enc.items() if k in keep}

    @torch.inference_mode()
    def generate(
        self, descriptions: list[str], texts: list[str], n_frames: int, seed: int
    ) -> list[Generated]:
        """Greedy generation of ``n_frames`` frames per sample (batch-invariant, reproducible)."""
        torch.manual_seed(seed)
        inputs = self._encode_text(descriptions, texts)
        audio = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=n_frames + self.n_codebooks - 1,
        )
        waves = audio.float().mean(dim=1).cpu().numpy()
        return [Generated(wave=w.astype(np.float32), sample_rate=self.sample_rate) for w in waves]

    def encode_audio(self, wave: np.ndarray) -> torch.Tensor:
        """The (K, T) codec tokens of a mono waveform at ``sample_rate``."""
        values = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)
        out = self.model.audio_encoder.encode(values.view(1, 1, -1), bandwidth=self.bandwidth)
        return out.audio_codes[0, 0]

    @torch.inference_mode()
    def teacher_forced_loss(
        self, descriptions: list[str], texts: list[str], reference_waves: list[np.ndarray]
    ) -> list[float]:
        """CE per sample over the delayed reference codes; padding is masked, never averaged."""
        delayed = [delay_codes(self.encode_audio(w), self.pad_id) for w in reference_waves]
        length = max(d.shape[1] for d in delayed)
        batch = len(delayed)
        labels = torch.full(
            (batch, self.n_codebooks, length), -100, dtype=torch.long, device=self.device
        )
        for i, d in enumerate(delayed):
            labels[i, :, : d.shape[1]] = d
        labels = labels.masked_fill(labels == self.pad_id, -100)
        decoder_inputs = torch.full_like(labels, self.pad_id)
        shifted = labels[..., :-1]
        decoder_inputs[..., 1:] = shifted.masked_fill(shifted == -100, self.pad_id)
        inputs = self._encode_text(descriptions, texts)
        out = self.model(
            **inputs,
            decoder_input_ids=decoder_inputs.reshape(batch * self.n_codebooks, length),
        )
        logits = out.logits.reshape(batch, self.n_codebooks, length, -1).float()
        token_loss = F.cross_entropy(
            logits.permute(0, 3, 1, 2), labels, ignore_index=-100, reduction="none"
        )
        valid = (labels != -100).sum(dim=(1, 2)).clamp(min=1)
        return (token_loss.sum(dim=(1, 2)) / valid).cpu().tolist()
