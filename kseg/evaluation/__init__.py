"""Inference and evaluation for both tasks, as library code.

- semantic: :class:`Predictor` (single scale), :class:`MultiScalePredictor`
  (GluonCV's ``MultiEvalModel``), :func:`evaluate_semantic` (GluonCV's
  ``test.py``: pixAcc/mIoU or submission PNGs);
- instance: :class:`InstancePredictor` (resize, detect, paste masks),
  :func:`evaluate_coco` (COCO bbox/segm AP with pycocotools);
- :func:`predict_files` (image files -> colour masks, overlays or drawn
  detections, for either task); :class:`CompiledCall`, the compiled-call cache
  every predictor shares.

Example:
    >>> from kseg.evaluation import Predictor
    >>> labels = Predictor(model, jit_compile=False).predict(kseg.data.normalize_image(image))
"""

from kseg.evaluation.coco import STAT_NAMES, evaluate_coco
from kseg.evaluation.files import predict_files
from kseg.evaluation.grid import GLUONCV_SCALES
from kseg.evaluation.instance import InstancePredictor, Instances
from kseg.evaluation.multiscale import MultiScalePredictor
from kseg.evaluation.predictor import CompiledCall, Predictor
from kseg.evaluation.semantic import EvalSettings, evaluate_semantic, write_metrics

__all__ = [
    "GLUONCV_SCALES",
    "STAT_NAMES",
    "CompiledCall",
    "EvalSettings",
    "InstancePredictor",
    "Instances",
    "MultiScalePredictor",
    "Predictor",
    "evaluate_coco",
    "evaluate_semantic",
    "predict_files",
    "write_metrics",
]
