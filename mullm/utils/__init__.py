"""Small shared helpers with no dependency on the rest of mullm (lowest layer).

Modules (import the one you need; nothing is re-exported here so that importing, say,
``mullm.utils.atomic`` does not import torch):

- ``atomic``: atomic file writes (temporary file in the same folder, fsync, ``os.replace``);
- ``locks``: one exclusive, non-blocking file lock (``filelock``) with a clear refusal;
- ``jsonl``: JSON Lines reading whose errors name ``file:line``;
- ``dtypes``: dtype names of configs -> torch dtypes;
- ``hashing``: content hashes of files, waveforms, module weights and JSON data;
- ``music``: pitch classes, key profiles, modes, tempo classes and metres;
- ``batching``: the windowed batching engine shared by captioning and feature extraction.
"""
