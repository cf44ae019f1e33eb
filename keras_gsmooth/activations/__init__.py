"""Smoothed activations: closed forms of h_σ and (h²)_σ (SPEC §2), and `get`."""

from keras_gsmooth.activations.approximate import Sigmoid
from keras_gsmooth.activations.approximate import Tanh
from keras_gsmooth.activations.base import SmoothedActivation
from keras_gsmooth.activations.erf_based import GELU
from keras_gsmooth.activations.erf_based import Erf
from keras_gsmooth.activations.exponential import Exponential
from keras_gsmooth.activations.get import NON_ELEMENTWISE
from keras_gsmooth.activations.get import deserialize
from keras_gsmooth.activations.get import get
from keras_gsmooth.activations.get import serialize
from keras_gsmooth.activations.periodic import Cos
from keras_gsmooth.activations.periodic import Sin
from keras_gsmooth.activations.piecewise import KerasPiecewiseLinear
from keras_gsmooth.activations.piecewise import PiecewiseLinear
from keras_gsmooth.activations.piecewise import ReLU
from keras_gsmooth.activations.quadrature import GaussHermite
