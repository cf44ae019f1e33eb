"""σ schedules: serializable functions from the training step to σ."""

from keras_gsmooth.schedules.base import Constant
from keras_gsmooth.schedules.base import SigmaSchedule
from keras_gsmooth.schedules.base import validate_schedule
from keras_gsmooth.schedules.get import get
