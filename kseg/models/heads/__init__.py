"""Segmentation heads. Each builder maps backbone features to class logits at
feature resolution; the task model resizes them to the input."""

from kseg.models.heads.aspp import deeplabv3_head
from kseg.models.heads.deeplabv3plus import vplr_deeplabv3plus_head
from kseg.models.heads.fcn import fcn_head
from kseg.models.heads.psp import psp_head

HEADS = {
    "fcn": fcn_head,
    "psp": psp_head,
    "deeplabv3": deeplabv3_head,
    "deeplabv3plus": vplr_deeplabv3plus_head,
}

__all__ = ["HEADS", "deeplabv3_head", "fcn_head", "psp_head", "vplr_deeplabv3plus_head"]
