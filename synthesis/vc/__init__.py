"""Voice conversion backends behind one interface (``synthesis.vc.base.VoiceConverter``)."""
