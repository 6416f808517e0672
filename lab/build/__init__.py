"""Inputs -> cached artifacts: kernels, initramfs images, hibernation disks."""
