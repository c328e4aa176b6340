"""Small, randomly initialized TTS models of the real architectures, saved as a hub repo would
be (safetensors, config, tokenizer), for tests, the demo and the benchmarks."""
