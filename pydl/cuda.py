"""pydl.cuda: whether the GPU path can be used."""
from pydl._device import cuda_is_available


def is_available():
    """True only when pydl._cuda and CuPy import and at least one GPU is present.

    Never raises; importing pydl does not need either module.
    """
    return cuda_is_available()


def device_count():
    if not cuda_is_available():
        return 0
    import cupy
    return cupy.cuda.runtime.getDeviceCount()
