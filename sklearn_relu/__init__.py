"""Fit ReLU models with SGD and quantized SGD, on one machine or many.

After "Fitting ReLUs via SGD and Quantized SGD" (Kalan, Soltanolkotabi and
Avestimehr, ISIT 2019).
"""

from ._datasets import make_relu_regression
from ._display import ConvergenceDisplay
from ._ensemble import select_consistent_run
from ._estimator import ReLURegressor, StepInfo
from ._exceptions import DivergenceError
from ._shards import DirichletShards

__version__ = "0.1.0"

__all__ = [
    "ConvergenceDisplay",
    "DirichletShards",
    "DivergenceError",
    "ReLURegressor",
    "StepInfo",
    "__version__",
    "make_relu_regression",
    "select_consistent_run",
]
