"""Media helpers: the ffmpeg binary, probing and decoding."""
