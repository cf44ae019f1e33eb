"""σ schedules: serializable functions from the training step to σ."""

from keras_gsmooth.schedules.base import Constant
from keras_gsmooth.schedules.base import SigmaSchedule
from keras_gsmooth.schedules.base import validate_schedule
from keras_gsmooth.schedules.callable import Callable
from keras_gsmooth.schedules.decay import CosineDecay
from keras_gsmooth.schedules.decay import ExponentialDecay
from keras_gsmooth.schedules.decay import InverseTimeDecay
from keras_gsmooth.schedules.decay import PiecewiseConstant
from keras_gsmooth.schedules.get import get
