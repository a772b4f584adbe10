"""Ablate's training side: builds the model, optimizer and data pipeline of one run, trains it
and writes its results to the store.

Imports TensorFlow and Keras; the control side (`service`) never imports this package.
"""
