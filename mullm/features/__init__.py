"""The feature cache: frozen-encoder outputs stored once, served instead of re-encoding.

Modules:

- ``keys``: the folder's format (file names, item keys, settings comparison, file stamps);
- ``cache``: ``FeatureCache``, reading a cache folder (by key, by audio file, by waveform);
- ``writer``: ``FeatureCacheWriter``, appending items in atomically written shards;
- ``extract``: ``extract_features``, the batch job behind ``mullm extract`` (on the
  windowed batching engine shared with captioning);
- ``cached_encoder``: ``CachedEncoder``, an encoder that serves cached rows.

Training reads a cache through ``ConversationDataset(feature_cache=...)``, which resolves
each audio file to its item key once, when the dataset is built: steps never read or hash
audio, and a cached file may be deleted.
"""

from mullm.features.cache import FeatureCache
from mullm.features.cached_encoder import CachedEncoder, cached_or_online
from mullm.features.extract import ExtractSummary, extract_features
from mullm.features.keys import (
    StaleCacheError,
    describe_differences,
    fingerprint_hash,
    item_key,
    resolve_layers,
)
from mullm.features.writer import FeatureCacheWriter

__all__ = [
    "CachedEncoder", "ExtractSummary", "FeatureCache", "FeatureCacheWriter", "StaleCacheError",
    "cached_or_online", "describe_differences", "extract_features", "fingerprint_hash",
    "item_key", "resolve_layers",
]
