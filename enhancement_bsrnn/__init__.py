"""BSRNN speech enhancement at 48 kHz (issue 5)."""
