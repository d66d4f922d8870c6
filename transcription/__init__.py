"""Language ID, Whisper and Paraformer transcription, Chinese punctuation, text filters (issue 4)."""
