"""Small trained score networks (torch): a time-conditioned MLP, denoising score matching under
any sftheory process with the [OS] weightings, a settings-keyed cache of trained weights, and
training data generated in code.

Example (20k steps: about two minutes on one CPU core)::

    from sftheory.processes import VP
    from sftheory.training import StepLR, SwissRoll, train_dsm

    res = train_dsm({"hidden": (50, 50)}, SwissRoll(), VP(0.1, 20), steps=20_000,
                    batch_size=400, lr=1e-2, lr_schedule=StepLR(8000, 0.5), cache=True)
    field = res.net.as_field()   # a score field for sftheory.samplers

Trained weights are cached by a hash of every setting under ``$SFTHEORY_CACHE`` or
``~/.cache/sftheory`` when ``cache=True`` (see :mod:`sftheory.training.cache`).

torch is needed (``pip install torch``); importing :mod:`sftheory` never imports this package.
"""
from .cache import CACHE_ENV as CACHE_ENV
from .cache import cache_dir as cache_dir
from .cache import settings_key as settings_key
from .datasets import ArrayData as ArrayData
from .datasets import LawData as LawData
from .datasets import SwissRoll as SwissRoll
from .datasets import swiss_roll_curve as swiss_roll_curve
from .dsm import WEIGHTINGS as WEIGHTINGS
from .dsm import ConstantLR as ConstantLR
from .dsm import StepLR as StepLR
from .dsm import TrainResult as TrainResult
from .dsm import torch_threads as torch_threads
from .dsm import train_dsm as train_dsm
from .dsm import weighting_values as weighting_values
from .nets import ScoreMLP as ScoreMLP

__all__ = ["ScoreMLP", "train_dsm", "TrainResult", "torch_threads", "StepLR", "ConstantLR",
           "WEIGHTINGS",
           "weighting_values", "SwissRoll", "LawData", "ArrayData", "swiss_roll_curve",
           "cache_dir", "settings_key", "CACHE_ENV"]
