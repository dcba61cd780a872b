"""Small shared helpers with no dependency on the rest of mullm (lowest layer).

Modules (import the one you need; nothing is re-exported here so that importing, say,
``mullm.utils.atomic`` does not import torch):

- ``atomic``: atomic file writes (temporary file in the same folder, fsync, ``os.replace``);
- ``locks``: one exclusive, non-blocking file lock (``filelock``) with a clear refusal;
- ``jsonl``: JSON Lines reading whose errors name ``file:line``, and writing any record as
  valid UTF-8 (file names that are not UTF-8 included);
- ``text``: user text files: byte-order marks, encodings, errors naming ``file:line``;
- ``files``: input-file checks (missing, empty, links, special files) and the writable
  output check;
- ``dtypes``: dtype names of configs -> torch dtypes;
- ``hashing``: content hashes of files, waveforms, module weights and JSON data;
- ``music``: pitch classes, key profiles, modes, tempo classes and metres;
- ``batching``: the windowed batching engine shared by captioning and feature extraction.
"""
