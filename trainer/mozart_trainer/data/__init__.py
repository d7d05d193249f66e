"""Mozart's datasets: the embedded corpus, GTZAN from Kaggle, any labelled folder.

Every dataset is a folder with a content-addressed ``manifest.json``::

    <root>/manifest.json
    <root>/<split>/<label>/<file>        corpus: <work-id>_seg<NN>.flac, 16 kHz mono

The manifest, not the folder names, is the source of truth. The API the trainer
uses is stable:

- ``load_manifest(root) -> DatasetManifest``: reads and checks the manifest.
  ``manifest.entries`` holds one ``ManifestEntry`` per file (``path`` relative to
  the root, ``sha256``, ``labels``/``label``, ``split``, ``duration_s``,
  ``sample_rate_hz``, ``channels``, ``group`` = the work or track that must never
  cross splits); ``manifest.split("train")`` filters; ``manifest.labels`` is the
  label order; ``manifest.dataset_digest`` is the digest to log to MLflow.
- ``iter_split(root, manifest, split, sample_rate_hz)`` yields ``(entry, audio)``
  with mono float32 audio at the requested rate; ``load_audio(path, rate)`` decodes one.
- Splits: ``train``, ``val``, ``test``; the corpus adds ``test_timbre``, its test
  works again, played only by held-out instruments that no class uses in train,
  val or test (an evaluation slice: never train or select models on it).
- ``build_corpus(CorpusConfig())`` builds (or returns the cached) default corpus
  under ``data/corpus/<config digest[:16]>/``.
"""

from mozart_trainer.data.audio import iter_split, load_audio
from mozart_trainer.data.manifest import (
    DatasetManifest,
    ManifestEntry,
    QuarantinedFile,
    load_manifest,
)

__all__ = [
    "DatasetManifest",
    "ManifestEntry",
    "QuarantinedFile",
    "iter_split",
    "load_audio",
    "load_manifest",
]
