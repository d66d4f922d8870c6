"""Audio in and out: ffmpeg decoding, resampling, FLAC encoding. Plain functions, no Ray."""
