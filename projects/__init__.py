"""The reproduced systems, one folder each, installed as the package data ``mullm.projects``.

This folder holds data (YAML), not code. The file makes it a regular package, so that
``importlib.resources.files("mullm.projects")`` works in an editable install too (setuptools'
editable finder cannot map a nested namespace package). Find configs by name with
``mullm.config.resolve_config_path`` or ``mullm configs``.
"""
