"""Training and evaluation of block-convolution CNNs on small real data (CPU).

Modules: `data` (datasets and loaders: scikit-learn digits, ImageFolder trees), `loop`
(SGD + MultiStepLR training, evaluation), `checkpoint` (save / load / rebuild a model),
`run` (the `bctvm data|train|eval` commands as library calls).
"""
