"""valor-data: build vision-audio-language datasets as WebDataset shards."""

__version__ = "0.1.0"
