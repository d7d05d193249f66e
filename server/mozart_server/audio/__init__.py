"""Audio: decoding clips and streams, WAV headers, resampling and cutting windows."""
