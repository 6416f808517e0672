"""Inputs -> cached artifacts: kernels, initramfs images and the guests' own programs,
each in the cache under a hash of its inputs (lab.cache)."""
