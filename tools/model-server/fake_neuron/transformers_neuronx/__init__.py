"""A stand-in for transformers-neuronx 0.13 on a machine without Neuron devices: for tests only, never shipped.

Only what the endpoint's handler uses, at the real module paths and with the real signatures
(aws-neuron/transformers-neuronx, src/transformers_neuronx/{config,llama/model,base,module,sampling,
stopping_criteria}.py, the 0.13 line the serving image carries). The public source stops at 0.13.322 (the December
2024 sync): the image's 0.13.1216 is not readable here, and the Neuron release notes list no transformers-neuronx
release after 0.13.380, whose one change pinned transformers<4.48 (aws-neuron-sdk v2.25.0,
release-notes/torch/transformers-neuronx/index.rst). Everything above the device is real: transformers reads the
checkpoint's config, torch holds the tensors. The device itself is neuron_device.py beside this package: NeuronCores
claimed from a pool, a slow load and a set time per token.
"""

__version__ = "0.13.1216"  # the serving image's (DLC tag 2.25.0, ARG NEURONX_TRANSFORMERS_VERSION)
