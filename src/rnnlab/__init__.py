"""rnnlab: recurrent neural networks from their equations, on PyTorch, Lightning and Hydra."""

__version__ = "0.1.0"
