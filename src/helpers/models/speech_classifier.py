"""The speech-pooled Whisper classifier (`pooling="speech"`): HF's audio classifier with its time mean taken over each
clip's speech positions only (`helpers.models.pooling` says how a batch stays equal to its clips run alone)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import WhisperForAudioClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from .pooling import encode_speech, masked_mean

__all__ = ["SpeechPooledWhisperForAudioClassification"]


class SpeechPooledWhisperForAudioClassification(WhisperForAudioClassification):
    """`WhisperForAudioClassification` whose projector output is averaged over each clip's speech positions
    (`speech_positions`, (B,) ints, required: without them every padded position would count as speech) instead of
    all positions. Features beyond each clip's speech must be zero (`helpers.models.pooling.batch_to_speech`)."""

    def forward(self, input_features: torch.Tensor, speech_positions: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        if speech_positions is None:
            raise ValueError("a speech-pooled classifier needs speech_positions (B,): each clip's speech positions "
                             "(helpers.models.pooling.speech_positions of the clip durations)")
        speech_positions = torch.as_tensor(speech_positions, device=input_features.device)
        hidden = self.projector(encode_speech(self.encoder, input_features, speech_positions))
        logits = self.classifier(masked_mean(hidden, speech_positions))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.to(logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits)
