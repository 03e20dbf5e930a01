"""The ``tcsnn`` sub-commands: argument parsing and printing only, one module per command.

Each module exposes ``add_cli_arguments(parser)`` and ``run_cli(args) -> int`` and imports the library (and
torch) inside ``run_cli``, so that ``tcsnn --help`` starts fast.
"""
