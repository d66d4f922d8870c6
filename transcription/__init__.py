"""Language ID, Whisper and Paraformer transcription, Chinese punctuation, text filters (issue 4)."""

from transcription.cpu_numerics import pin_cpu_numerics

pin_cpu_numerics()  # before any module of this package imports ctranslate2
