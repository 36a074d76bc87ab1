"""Dataset export: selection of what leaves, the held-out split, WebDataset shards, the Parquet
index, OmniGen2 jsonl, the manifest and the dataset card, and the export job service."""
