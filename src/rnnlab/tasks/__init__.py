"""Tasks: each is a LightningDataModule + a LightningModule + its defaults in configs/task/.

A task's data module exposes `model_kwargs()` after `setup()`: the sizes the model takes from the
data (for charlm: the vocabulary). `rnnlab.train` passes them to the module's constructor, so no
config ever holds a data-derived size. The module exposes `datamodule_kwargs()` and
`from_checkpoint(path)` for the way back (evaluate a checkpoint on its own vocabulary).
"""
