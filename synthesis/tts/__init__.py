"""Text-to-speech backends behind one interface (``synthesis.tts.base.TextToSpeech``)."""
