"""Transmitter service: images -> semantic latents -> self-noised frames -> channel emulator."""
