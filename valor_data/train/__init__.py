"""The reference trainer: the VALOR model (MGA + MGC) trained on the produced shards.

It knows only shard paths (a split's ``W/shards/<split>.shards.json`` or explicit tars),
never how they were made. Modules, in data-flow order:

- ``data.py``: shards -> decoded, batched samples (webdataset stages, torch DataLoader)
- ``tars.py``: damaged tars named and counted against the shard lists; evaluation completeness
- ``audio.py``: FLAC -> Kaldi-style log-mel filterbank (in torch) -> AST slices
- ``video.py``: mp4 -> N frames from uniform segments (keyframe seeks when keyframes are dense)
- ``presampled.py``: build-shards' pre-sampled frames (JPEG) and filterbank (float16), used when present
- ``workers.py``: DataLoader workers, prefetch and pinned memory from the machine
- ``text.py``: caption vocabularies and the BERT tokenizer
- ``model.py``: the model shape (``ModelConfig``, presets) and the VALOR model
- ``losses.py``: MGA (grouped contrastive alignment) and MGC (causal masked captioning)
- ``loop.py``: the training loop (CPU or CUDA, DDP under torchrun, checkpoints, logs)
- ``evaluate.py`` + ``metrics.py``: retrieval (VALOR's way), captioning and classification metrics,
  the per-clip views and the evaluation-time controls; exact binomial tails
- ``validate.py``: train briefly, judge every modality against chance and the three controls
- ``config.py``: ``TrainConfig`` (the ``train:`` section of a pipeline YAML)
- ``api.py``: what ``valor-data train`` runs (train + evaluate, evaluate a checkpoint, validate)

Learnable synthetic shards for tests and benchmarks are in ``valor_data.synth.shards``.
"""
