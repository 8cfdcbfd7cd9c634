"""Receiver service: the legitimate listener, decoding frames with the diffusion receiver."""
