"""keras-gsmooth: train Keras 3 networks on their Gaussian-smoothed loss, in closed form."""

from keras_gsmooth import activations
from keras_gsmooth import config
from keras_gsmooth import layers
from keras_gsmooth import models
from keras_gsmooth import montecarlo
from keras_gsmooth import optimizers
from keras_gsmooth import regularizers
from keras_gsmooth import rules
from keras_gsmooth import schedules
from keras_gsmooth import svrg
from keras_gsmooth.convert import smooth_model
from keras_gsmooth.optimizers import GSmoothAdam
from keras_gsmooth.optimizers import GSmoothSGD
from keras_gsmooth.rules import register_rule
from keras_gsmooth.sigma import SmoothedModel
from keras_gsmooth.sigma import get_sigma
from keras_gsmooth.sigma import set_sigma
from keras_gsmooth.svrg import GSmoothSVRG
from keras_gsmooth.svrg import SVRGSnapshot

__version__ = "0.1.0"
