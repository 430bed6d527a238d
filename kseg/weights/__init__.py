"""Weights: MXNet ``.params`` reading and writing, GluonCV name maps, the download cache.

Below the models: nothing here imports ``kseg.models``. A preset's
``weights.converter`` names the map in :data:`CONVERTERS` that loads its file.
"""
