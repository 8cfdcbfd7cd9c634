"""DiffSem core: diffusion-aided task-oriented semantic communication under model inversion attack.

Plain PyTorch + diffusers + NumPy. No transport code (grpc, fastapi) may be imported here.
"""

__version__ = "0.1.0"
