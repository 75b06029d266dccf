"""Files and formats: atomic writes, .npy streams, safetensors headers and their schemas."""
