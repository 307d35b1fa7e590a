"""Models: Whisper weights and the audio classifier.

`weights` resolves a source to a Hugging Face folder (tiny.en converted offline from the CTranslate2 copy that
`ctranslate2` reads; Hub ids; local folders); `classifier` builds `WhisperForAudioClassification` with shorter
inputs and saves/loads it; `lora` holds the LoRA settings, attaches them with peft and re-draws them;
`transcription` decodes text, the check that converted weights are Whisper.
"""
