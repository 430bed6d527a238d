"""Command-line programs shared by ``recipes/`` and the ``kseg`` command."""
