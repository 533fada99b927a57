"""Inference engines behind one interface: a batch of chat requests in, texts and counts out."""
