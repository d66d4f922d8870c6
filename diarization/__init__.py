"""Who speaks when: voice activity, speaker diarization and the Kimi post-processing steps."""
