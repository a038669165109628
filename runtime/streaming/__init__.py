"""The parts a stream is assembled from (runtime/pipeline.py composes them, runtime/multistream.py
shares one inference step between several): channels, the frame that travels through them, the
stages, the inference step and the driver that runs a stream on the caller's thread."""
