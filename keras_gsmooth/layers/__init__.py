"""The smoothed layers that are not Keras's own, one module per kind (as `keras.layers`)."""

from keras_gsmooth.layers.activation import SmoothActivation
from keras_gsmooth.layers.activation import SmoothPReLU
from keras_gsmooth.layers.convolutional import SmoothSeparableConv1D
from keras_gsmooth.layers.convolutional import SmoothSeparableConv2D
from keras_gsmooth.layers.dense import SmoothDense
from keras_gsmooth.layers.input_penalty import InputPenalty
from keras_gsmooth.layers.merging import SmoothDot
from keras_gsmooth.layers.merging import SmoothMultiply
from keras_gsmooth.layers.pooling import AveragePooling1D
from keras_gsmooth.layers.pooling import AveragePooling2D
from keras_gsmooth.layers.pooling import AveragePooling3D
from keras_gsmooth.layers.pooling import average_pool
from keras_gsmooth.layers.pooling import tiled_average_pool
