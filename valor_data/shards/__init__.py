"""build-shards and verify-splits: splits -> reproducible WebDataset tars, index, exports, card; and their checks."""
