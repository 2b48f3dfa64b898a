"""Feature models: the architecture registry and the safe loaders.

- :data:`ARCHITECTURES` (``facebench.models.registry``): name -> :class:`ArchSpec` for
  ``iresnet18/34/50/100/200`` (insightface arcface_torch), ``face-resnet`` (Wen et al. 2016)
  and ``small-cnn`` (the demo's).
- :func:`load_model` (``facebench.models.loaders``): TorchScript, ONNX, or an architecture
  plus a state_dict read with ``torch.load(weights_only=True)``, as a :class:`FeatureModel`.

Importing this package imports nothing heavy: the registry and the loaders import torch
(and onnxruntime) only inside the functions that build or load a model.
"""

from __future__ import annotations

from facebench.models.loaders import FeatureModel, ModelError, load_model
from facebench.models.registry import ARCHITECTURES, ArchSpec

__all__ = ["ARCHITECTURES", "ArchSpec", "FeatureModel", "ModelError", "load_model"]
