"""Monte-Carlo Gaussian smoothing: the sampling baseline to the package's closed form.

`smoothed_loss_and_gradients` estimates E[L(θ + σu)], u ~ N(0, I/2), and
its gradient for any Keras model and loss (first order or zero order, with
optional antithetic pairs); `MonteCarloModel` trains any model on those
estimates with `fit`. Both smooth the composed network's loss, which is not
the lifted objective of `keras_gsmooth.smooth_model` (SPEC §4).
"""

from keras_gsmooth.montecarlo.estimators import smoothed_loss_and_gradients
from keras_gsmooth.montecarlo.model import MonteCarloModel
