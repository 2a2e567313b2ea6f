"""dimatting: Deep Image Matting (Xu et al., CVPR 2017), compatible with mmagic's DIM, in plain PyTorch."""

from dimatting.errors import DimattingError

__version__ = "0.1.0"
__all__ = ["DimattingError", "__version__", "load_model"]


def load_model(path, device="auto", **options):
    """Load a DIM checkpoint for prediction (see `dimatting.inference.load_model`): `precision` (default:
    tf32 on CUDA, the reference's GPU numerics; fp32 on the CPU), `compile`, tiling and layout options.

    Imported lazily so that `import dimatting` (e.g. for the metrics) does not pay for torch.
    """
    from dimatting.inference import load_model as _load_model

    return _load_model(path, device=device, **options)
