"""Subcommands of the ``mullm`` CLI, one module each (see ``mullm.cli``)."""
