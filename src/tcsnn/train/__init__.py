"""Training: the run config, the engine, checkpoints, the weight average, recipes and run reports.

Import the submodules (``tcsnn.train.engine``, ``tcsnn.train.config``, ...); this package imports nothing
itself, so that the command line can read the config without loading torch.
"""
